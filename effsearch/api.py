"""The Python API: `tune` runs the study `effsearch tune` runs, `load` opens one; both return a StudyResult.

A notebook can register its model and data without a file: pass an `effsearch.Registration` (or what
`effsearch.register(...)` returns) to `tune`. The rank processes receive it pickled with cloudpickle.
Errors raise effsearch's exceptions; nothing prints unless asked (`progress=True`, `verbose=True`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from effsearch.api_result import RunStats, StudyResult, result_of
from effsearch.errors import UserFileError
from effsearch.registration import Registration
from effsearch.userfile import UserFile, user_file_of

if TYPE_CHECKING:
    from rich.console import Console

    from effsearch.study import TuneSettings
    from effsearch.userfile import Probe

__all__ = ["StageProgress", "StudyResult", "RunStats", "TuneJob", "load", "prepare", "tune", "user_file_of"]

log = logging.getLogger(__name__)

OnStage = Callable[[int, str, int, int], None]


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[None]:
    """Optuna's per-trial log lines off (on with verbose) for the call, and effsearch's log records kept off
    stderr where the program configured no logging (a notebook): logging's last resort would print them."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else max(before, optuna.logging.WARNING))
    package = logging.getLogger("effsearch")
    null = logging.NullHandler()
    if not verbose and not logging.getLogger().handlers and not package.handlers:
        package.addHandler(null)
    try:
        yield
    finally:
        package.removeHandler(null)
        optuna.logging.set_verbosity(before)


class StageProgress:
    """The run-by-run progress line (rich: a terminal, or a widget in Jupyter); called as the Tuner's on_stage."""

    def __init__(self, trials: int, *, console: Console | None = None, disable: bool = False) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.trials = trials
        self.progress = Progress(
            TextColumn("[bold]run[/] {task.completed:.0f}/{task.total:.0f}"),
            BarColumn(),
            TextColumn("{task.fields[stage]}"),
            TextColumn("front {task.fields[front]}"),
            TextColumn("screened out {task.fields[screened]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),  # estimated from the runs finished so far; blank until there are some
            console=console,
            transient=False,
            disable=disable,
        )
        self.task = self.progress.add_task("tune", total=trials, stage="starting", front=0, screened=0)

    def __call__(self, run: int, stage: str, front: int, screened: int) -> None:
        fields: dict[str, Any] = {"stage": stage, "screened": screened}
        if front >= 0:
            fields["front"] = front
        self.progress.update(self.task, completed=min(run, self.trials), **fields)

    def done(self, result: StudyResult) -> None:
        """The last update: the runs done and the front's size once the call has returned."""
        done = result.ran.done if result.ran is not None else 0
        try:
            front = len(result.study.best_trials)
        except Exception:  # a study with no complete trial has no best trials to count
            front = 0
        self.progress.update(self.task, completed=min(done, self.trials), stage="done", front=front)

    def __enter__(self) -> StageProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


@dataclass(frozen=True)
class TuneJob:
    """A tune ready to run: the user file probed and the settings checked; nothing made yet."""

    user_file: UserFile
    probe: Probe
    datasets: tuple[Any, Any]
    settings: TuneSettings

    def run(self, *, on_stage: OnStage | None = None, progress: bool = False, verbose: bool = False) -> StudyResult:
        """Create or resume the study and run it; on_stage(run, stage, front, screened) follows it (see Tuner)."""
        from effsearch.study import tune as run_study

        with _quiet(verbose), (StageProgress(self.settings.trials) if progress else contextlib.nullcontext()) as bar:
            tuner, summary = run_study(
                self.settings, uf=self.user_file, probe=self.probe, datasets=self.datasets, on_stage=on_stage or bar
            )
            ran = RunStats(
                done=summary.runs_done, here=summary.runs_here, completed=summary.completed_here, failed=summary.failed_here,
                screened=tuner.screened, stopped=tuner.stopped,
            )
            result = result_of(summary.study, self.settings.storage_url, user_file=self.user_file, ran=ran)
            if bar is not None:
                bar.done(result)
        return result


def prepare(source: str | Path | Registration | UserFile, *, trials: int, **options: Any) -> TuneJob:
    """Load and probe the user file (or registration) and check the options (`effsearch.study.settings_for`)."""
    from effsearch.study import settings_for
    from effsearch.userfile import probe

    uf = user_file_of(source)
    info, datasets = probe(uf)
    settings = settings_for(uf, info, trials=trials, **options)
    return TuneJob(uf, info, datasets, settings)


def tune(
    source: str | Path | Registration | UserFile,
    *,
    trials: int = 40,
    study: str | None = None,
    storage: str | None = None,
    seed: int = 0,
    epochs: int | None = None,
    space: str | Path | None = None,
    objectives: str | Sequence[str] | None = None,
    timeout: float | None = None,
    max_world_size: int | None = None,
    energy_meter: str | None = None,
    trial_timeout: float | None = None,
    latency_threads: int = 1,
    latency_batch: int = 1,
    latency_seq_len: int | None = None,
    max_latency_ms: float | None = None,
    max_metric_drop: float | None = None,
    max_size_mb: float | None = None,
    artifacts: str | Path | None = None,
    heartbeat_interval: int = 10,
    heartbeat_grace: int = 30,
    early_stop: bool = True,
    progress: bool = False,
    verbose: bool = False,
) -> StudyResult:
    """Run (or resume) a study on a model file or a Registration, as `effsearch tune` does, and return its result.

    The options are `effsearch tune`'s, by the same names (`--max-latency-ms` is max_latency_ms); objectives
    may be a list of keys. progress: show rich's progress line (it works in Jupyter). verbose: Optuna's
    per-trial log lines too. A bad option, file or registration raises an EffsearchError before any study exists.
    """
    if not isinstance(objectives, str) and objectives is not None:
        objectives = ",".join(objectives)
    with _quiet(verbose):
        job = prepare(
            source, trials=trials, study=study, storage=storage, seed=seed, epochs=epochs, space=Path(space) if space else None,
            objectives=objectives, timeout=timeout, max_world_size=max_world_size, energy_meter=energy_meter,
            trial_timeout=trial_timeout, latency_threads=latency_threads, latency_batch=latency_batch,
            latency_seq_len=latency_seq_len, max_latency_ms=max_latency_ms, max_metric_drop=max_metric_drop,
            max_size_mb=max_size_mb, artifacts=Path(artifacts) if artifacts else None, heartbeat_interval=heartbeat_interval,
            heartbeat_grace=heartbeat_grace, early_stop=early_stop,
        )
        return job.run(progress=progress, verbose=verbose)


def load(study: str | None = None, storage: str | None = None, *, file: str | Path | Registration | None = None) -> StudyResult:
    """Open an existing study (the only one in the storage when `study` is None) and return its result.

    file: the model file or Registration that `export` verifies with (a study made from Python records none).
    """
    import optuna

    from effsearch.storage import open_existing, pick_study_name

    st, url = open_existing(storage)
    name = pick_study_name(st, study, url)
    uf = user_file_of(file) if file is not None else None
    return result_of(optuna.load_study(study_name=name, storage=st), url, user_file=uf)
