"""The typer app, its consoles and the options shared by commands."""

from __future__ import annotations

import logging
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler

__all__ = ["app", "out", "err", "is_debug", "StudyOpt", "StorageOpt", "load_study", "print_failures"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Find the efficient versions of a PyTorch model: search training, pruning, precision and device count.",
    pretty_exceptions_enable=False,
)
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)
_state = {"debug": False}

log = logging.getLogger("effsearch")


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False) -> None:
    _state["debug"] = debug
    logging.getLogger("effsearch").setLevel(logging.DEBUG if debug else logging.INFO)
    logging.basicConfig(
        level=logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=debug, show_time=debug, markup=False)],
        force=True,
    )
    import optuna

    # Failed trials are reported by effsearch itself, with their reasons.
    optuna.logging.set_verbosity(optuna.logging.INFO if debug else optuna.logging.ERROR)
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()


StudyOpt = Annotated[str | None, typer.Option("--study", help="Study name (default: the only study in the storage).")]
StorageOpt = Annotated[
    str | None, typer.Option("--storage", help="Storage URL (default: sqlite:///studies/effsearch.db; postgresql://... to share).")
]


def load_study(study: str | None, storage: str | None):
    import optuna

    from effsearch.storage import open_existing, pick_study_name

    st, url = open_existing(storage)
    name = pick_study_name(st, study, url)
    return optuna.load_study(study_name=name, storage=st), url


def print_failures(study) -> None:
    from effsearch.results.front import failures
    from effsearch.report.table import failures_table

    failed = failures(study)
    if failed:
        out.print(failures_table(failed))


def is_debug() -> bool:
    return _state["debug"]


def print_front(result: Any, wide: bool) -> None:  # result: effsearch.api.StudyResult
    """The study's front table, then its failures."""
    from effsearch.report.table import front_table
    from effsearch.results.front import study_info

    out.print(front_table(study_info(result.study), list(result.rows), result.knee["trial"] if result.knee else None, wide=wide))
    print_failures(result.study)
