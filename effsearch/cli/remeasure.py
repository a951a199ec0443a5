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
    threads = latency_threads or int(read_meta(st).get("latency", {}).get("threads") or 1)
    entry = run(st, threads=threads)
    if entry is None:
        err.print("nothing to re-measure: the study has no completed trial with its file", markup=False, highlight=False)
        raise typer.Exit(1)
    err.print(
        f"re-measured {len(entry['trials'])} artifacts together on {entry['host']} in {entry['seconds']:.1f} s", markup=False, highlight=False
    )
    rows = front_rows(st)
    k = knee(st, rows)
    out.print(front_table(study_info(st), rows, k.trial if k else None))
