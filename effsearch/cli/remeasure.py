"""`effsearch remeasure`: time the front, the points within noise of it and the baseline together."""

from __future__ import annotations

from typing import Annotated

import typer

from effsearch.cli.app import StorageOpt, StudyOpt, app, err, load_study, out


@app.command()
def remeasure(
    study: StudyOpt = None,
    storage: StorageOpt = None,
    latency_threads: Annotated[int | None, typer.Option("--latency-threads", min=1, help="onnxruntime threads (default: the study's).")] = None,
) -> None:
    """Re-measure the front's latency together (interleaved blocks); the front then uses these figures."""
    from effsearch.record import read_meta
    from effsearch.report.table import front_table
    from effsearch.results.front import front_rows, knee, study_info
    from effsearch.study.remeasure import remeasure as run

    st, _ = load_study(study, storage)
    meta = read_meta(st)
    threads = latency_threads or int(meta.get("latency", {}).get("threads") or 1)
    entry = run(st, threads=threads, meter_cls=_meter(meta.get("infer_energy_source")))
    if entry is None:
        err.print("nothing to re-measure: the study has no completed trial with its file", markup=False, highlight=False)
        raise typer.Exit(1)
    energy = f", inference energy with {entry['energy']['meter']}" if "energy" in entry else ""
    err.print(
        f"re-measured {len(entry['trials'])} artifacts together{energy} on {entry['host']} in {entry['seconds']:.1f} s", markup=False, highlight=False
    )
    rows = front_rows(st)
    k = knee(st, rows)
    out.print(front_table(study_info(st), rows, k.trial if k else None))


def _meter(source: str | None) -> object | None:
    """The study's inference-energy meter where it measures and is usable here; None for the estimate."""
    from effsearch.plugins import plugins_of_kind

    found = [p.obj for p in plugins_of_kind("energy_meter") if p.name == source and not p.unavailable]
    return found[0] if found and getattr(found[0], "measured", False) else None
