"""The study in rooms by job: settings, creating or loading it, the run loop, recording, giving up, the Tuner.

`tune()` is the whole job as the CLI runs it: choose the instruments, open the study, run the Tuner.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from effsearch.storage import check_writable
from effsearch.study.create import Instruments, environment, open_study, open_worker
from effsearch.study.loop import runs_counted
from effsearch.study.settings import TuneSettings, TuneSummary
from effsearch.study.tuner import OnStage, Tuner, config_of
from effsearch.userfile import Probe, UserFile

__all__ = [
    "Instruments",
    "TuneSettings",
    "TuneSummary",
    "Tuner",
    "check_folders",
    "config_of",
    "environment",
    "open_study",
    "open_worker",
    "runs_counted",
    "tune",
]


def check_folders(settings: TuneSettings) -> None:
    """Refuse folders that cannot be written before anything is made: no study, no folder for a bad option."""
    check_writable(settings.artifact_dir, "--artifacts" if settings.artifacts else "the study folder")
    if settings.storage_url.startswith("sqlite:///"):
        check_writable(Path(settings.storage_url.removeprefix("sqlite:///")).parent, "--storage")


def tune(
    settings: TuneSettings,
    *,
    uf: UserFile,
    probe: Probe,
    datasets: tuple[Any, Any],
    on_stage: OnStage | None = None,
    until: Callable[[optuna.Study], bool] | None = None,
) -> tuple[Tuner, TuneSummary]:
    """Create or resume the study in `settings` and run it; the Tuner is returned for its front size.

    until(study): end early once it holds (a benchmark running until a goal is met).
    """
    check_folders(settings)
    if settings.storage_url.startswith("sqlite:///"):
        Path(settings.storage_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    tools = Instruments.choose(settings.energy_meter)
    # The worker's settings: its own seed, the study's artifact folder.
    study, worker = open_worker(settings, uf=uf, probe=probe, tools=tools)
    tuner = Tuner(study, uf, worker, tools=tools, on_stage=on_stage)
    return tuner, tuner.run(datasets, until=until)
