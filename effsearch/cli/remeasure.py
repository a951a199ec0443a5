"""`effsearch remeasure`: time the front, the points within noise of it and the baseline together."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from effsearch.cli.app import StorageOpt, StudyOpt, app, err, load_study, out
from effsearch.cli.report import WideOpt


@app.command()
def remeasure(
    study: StudyOpt = None,
    storage: StorageOpt = None,
    latency_threads: Annotated[int | None, typer.Option("--latency-threads", min=1, help="onnxruntime threads (default: the study's).")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Take the timed validation samples from this user file instead of the one the study recorded.")
    ] = None,
    wide: WideOpt = False,
) -> None:
    """Re-measure the front's latency together (interleaved blocks) as tune does: on the study's latency target,
    with its validation samples at its latency batch; the front then uses these figures."""
    from effsearch.report.table import front_table
    from effsearch.results.front import front_rows, knee, study_info
    from effsearch.study.remeasure import remeasure_study

    st, _ = load_study(study, storage)
    entry = remeasure_study(st, threads=latency_threads, user_file=file)
    if entry is None:
        err.print("nothing to re-measure: the study has no completed trial with its file", markup=False, highlight=False)
        raise typer.Exit(1)
    energy = f", inference energy with {entry['energy']['meter']}" if "energy" in entry else ""
    target = f" ({', '.join(entry['providers'])})" if entry.get("providers") else ""
    err.print(
        f"re-measured {len(entry['trials'])} artifacts together{energy} on {entry['host']}{target} in {entry['seconds']:.1f} s",
        markup=False, highlight=False,
    )
    rows = front_rows(st)
    k = knee(st, rows)
    out.print(front_table(study_info(st), rows, k.trial if k else None, wide=wide))
