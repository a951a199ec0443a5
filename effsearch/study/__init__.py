"""The study in rooms by job: settings, creating or loading it, the run loop, recording, giving up, the Tuner.

`settings_for()` turns a tune's options into its settings; `tune()` is the whole job as the CLI runs it:
choose the instruments, open the study, run the Tuner.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from effsearch.space import config_of
from effsearch.study.create import Instruments, environment, open_study, open_worker
from effsearch.study.loop import runs_counted
from effsearch.study.options import check_folders, settings_for
from effsearch.study.settings import Hardware, TuneSettings, TuneSummary
from effsearch.study.tuner import OnStage, Tuner
from effsearch.userfile import Probe, UserFile

__all__ = [
    "Hardware",
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
    "settings_for",
    "tune",
]


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

    until(study): end early once it holds (a benchmark running until a goal is met). The folders were
    checked by settings_for, before anything was made.
    """
    if settings.storage_url.startswith("sqlite:///"):
        Path(settings.storage_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    tools = Instruments.choose(settings.energy_meter)
    # The worker's settings: its own seed, the study's artifact folder.
    study, worker = open_worker(settings, uf=uf, probe=probe, tools=tools)
    tuner = Tuner(study, uf, worker, tools=tools, on_stage=on_stage)
    return tuner, tuner.run(datasets, until=until)
