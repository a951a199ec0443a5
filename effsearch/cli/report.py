"""`effsearch pareto`: the front as a table or JSON."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from effsearch.cli.app import StorageOpt, StudyOpt, app, load_study, out, print_failures

# The front table shows what fits the terminal; this shows every column, wrapped where they do not fit.
WideOpt = Annotated[
    bool, typer.Option("--wide", help="Show every column of the table, wrapped where the terminal is too narrow.")
]


@app.command()
def pareto(
    study: StudyOpt = None,
    storage: StorageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Write the front as a JSON array to stdout.")] = False,
    wide: WideOpt = False,
) -> None:
    """Show the Pareto-optimal trials of a study."""
    from effsearch.results.front import front_rows, knee, row_json, study_info
    from effsearch.report.table import front_table

    st, _ = load_study(study, storage)
    rows = front_rows(st)
    if as_json:
        sys.stdout.write(json.dumps([row_json(r) for r in rows], indent=2, allow_nan=False) + "\n")
        return
    k = knee(st, rows)
    out.print(front_table(study_info(st), rows, k.trial if k else None, wide=wide))
    print_failures(st)


