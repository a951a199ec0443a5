"""`effsearch export`: ship one trial's ONNX file, verified, with its model card."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from effsearch.cli.app import StorageOpt, StudyOpt, app, load_study, out


@app.command()
def export(
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the model (taken literally; parents are made).")],
    study: StudyOpt = None,
    storage: StorageOpt = None,
    trial: Annotated[int | None, typer.Option("--trial", min=0, help="Export this trial number.")] = None,
    pick: Annotated[str | None, typer.Option("--pick", help="Pick rule: knee (the front trial nearest the utopia point).")] = None,
    max_latency_ms: Annotated[float | None, typer.Option("--max-latency-ms", min=0, help="Limit: p50 latency in ms as effsearch shows it (one call at the study's latency batch; re-measured where it was).")] = None,
    max_metric_drop: Annotated[float | None, typer.Option("--max-metric-drop", help="Limit: drop from the dense baseline, in the metric's units.")] = None,
    max_size_mb: Annotated[float | None, typer.Option("--max-size-mb", min=0, help="Limit: file size in MB (10^6 bytes).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the model and its cards if they exist.")] = False,
    file: Annotated[Path | None, typer.Option("--file", help="Verify with this user file instead of the one the study recorded.")] = None,
) -> None:
    """Export a trial to ONNX for onnxruntime: by --trial N, --pick knee, or limits (best metric within them)."""
    from effsearch.constraints import Constraints
    from effsearch.export import export_trial
    from effsearch.results.front import study_info
    from effsearch.results.pick import pick_knee, pick_trial, pick_within

    limits = Constraints(max_latency_ms=max_latency_ms, max_metric_drop=max_metric_drop, max_size_mb=max_size_mb)
    chosen = [name for name, on in (("--trial", trial is not None), ("--pick", pick is not None), ("limits", bool(limits))) if on]
    if len(chosen) != 1:
        what = "none" if not chosen else " and ".join(chosen)
        raise typer.BadParameter(
            f"choose the model one way, got {what}: --trial N, --pick knee, or limits (--max-latency-ms, --max-metric-drop, --max-size-mb)"
        )
    if pick is not None and pick != "knee":
        raise typer.BadParameter(f"--pick {pick!r} is not a pick rule; the rule is: knee")
    st, url = load_study(study, storage)
    if trial is not None:
        row, how = pick_trial(st, trial), "by number"
    elif pick is not None:
        row, how = pick_knee(st), "the knee of the front"
        if row.within_noise:
            how += f"; within noise of trial(s) {', '.join(map(str, row.within_noise))}, which measure the same"
    else:
        row = pick_within(st, limits)
        how = f"the best {study_info(st).metric_key} within {limits.describe(study_info(st).metric_key)}"
    res = export_trial(st, row, output, url, force=force, user_file=file)
    key = res.metric_key
    out.print(
        f"exported trial {res.trial} ({how}; {row.precision}) of study {st.study_name!r} to {res.path}\n"
        f"  verified: {key} {res.verified:.6g} (recorded {res.recorded:.6g}, tolerance {res.tolerance:g})\n"
        f"  cards: {res.card_json}, {res.card_md}",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
