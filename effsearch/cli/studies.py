"""`effsearch studies`: list the studies in a storage, or delete one with its artifacts."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from effsearch.cli.app import StorageOpt, app, err, out


@app.command()
def studies(
    storage: StorageOpt = None,
    delete: Annotated[str | None, typer.Option("--delete", help="Delete this study and its artifacts.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """List the studies in a storage (runs, trials, front size, last activity)."""
    import optuna
    from optuna.trial import TrialState

    from effsearch.record import read_all, read_meta
    from effsearch.storage import open_existing, pick_study_name, redact
    from effsearch.study import runs_counted
    from effsearch.study.settings import artifact_folder

    st, url = open_existing(storage)
    if delete is not None:
        name = pick_study_name(st, delete, url)
        study = optuna.load_study(study_name=name, storage=st)
        meta = read_meta(study)
        folder = meta.artifacts
        n = len(study.get_trials(deepcopy=False))
        where = f" and its artifacts in {folder}" if folder else ""
        if not yes and not typer.confirm(f"delete study {name!r} ({n} trials) from {redact(url)}{where}?", err=True):
            raise typer.Exit(1)
        optuna.delete_study(study_name=name, storage=st)
        # Only a folder named after the study (and its identifier) is removed, so a wrong record cannot
        # delete anything else, nor another storage's study of the same name.
        if folder and Path(folder).name == artifact_folder(name, meta.id) and Path(folder).is_dir():
            shutil.rmtree(folder)
        err.print(f"deleted study {name!r}")
        return
    table = Table(title=f"studies in {redact(url)}", title_justify="left")
    for col in ("study", "runs", "trials", "complete", "failed", "running", "front", "last activity"):
        table.add_column(col, justify="left" if col in ("study", "last activity") else "right")
    for summary in st.get_all_studies():
        study = optuna.load_study(study_name=summary.study_name, storage=st)
        trials = study.get_trials(deepcopy=False)
        recorded = read_all(study)
        lost = sum(t.lost for t in recorded)  # RUNNING in the storage, but their worker is provably dead
        count = lambda state: sum(t.state == state for t in trials)  # noqa: E731
        try:
            front = len(study.best_trials)
        except (ValueError, RuntimeError):
            front = 0
        stamps = [t.datetime_complete or t.datetime_start for t in trials if (t.datetime_complete or t.datetime_start)]
        table.add_row(
            study.study_name, str(runs_counted(study)), str(len(trials)), str(count(TrialState.COMPLETE)),
            str(count(TrialState.FAIL) + lost), str(count(TrialState.RUNNING) - lost), str(front),
            max(stamps).strftime("%Y-%m-%d %H:%M:%S") if stamps else "-",
        )
    out.print(table)
