"""Launching the workers of one study through an engine: `effsearch tune FILE --workers N --launcher NAME`.

Each worker is `effsearch tune FILE --study S --storage URL ...` with the launch's options, started as a
process (local), a SLURM job through submitit (slurm) or a Ray task (ray); workers that join one study
get their own seeds and ranks (study/create.py). The engines other than local are optional extras.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from effsearch.errors import StudyError
from effsearch.launch.base import Launcher, Share, Worker, check_storage, run_worker
from effsearch.launch.local import LocalLauncher
from effsearch.launch.preempt import Preemption, requeue_interrupted
from effsearch.launch.run import Launched, StudyWatch, exit_line, start, wait, worker_argv, world_cap

__all__ = [
    "LAUNCHERS", "Launched", "Launcher", "Preemption", "Share", "StudyWatch", "Worker", "check_storage", "exit_line",
    "launcher_for", "requeue_interrupted", "run_worker", "start", "wait", "worker_argv", "world_cap",
]


def _slurm(options: Sequence[str]) -> Launcher:
    from effsearch.launch.slurm import SlurmLauncher

    return SlurmLauncher(options)


def _ray(options: Sequence[str]) -> Launcher:
    from effsearch.launch.ray import RayLauncher

    return RayLauncher(options)


# Launchers by `--launcher` name; the engines' modules are imported only when chosen.
LAUNCHERS: dict[str, Callable[[Sequence[str]], Launcher]] = {"local": LocalLauncher, "slurm": _slurm, "ray": _ray}


def launcher_for(name: str, options: Sequence[str] = ()) -> Launcher:
    """The launcher named `name`, with its `--launcher-option KEY=VALUE` pairs; an unknown name is refused."""
    if name not in LAUNCHERS:
        raise StudyError(f"--launcher {name}: expected one of {', '.join(LAUNCHERS)}")
    return LAUNCHERS[name](options)
