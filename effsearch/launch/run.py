"""A launch from start to end: each worker's command, the engine's start, and the wait, watching the study."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from effsearch.launch.base import Launcher, Share, Worker, check_storage
from effsearch.storage import artifacts_root
from effsearch.study.settings import TuneSettings

__all__ = ["Launched", "StudyWatch", "exit_line", "start", "wait", "worker_argv", "world_cap"]

CTRL_C_GRACE_S = 5.0
OnProgress = Callable[[int, int], None]  # (runs counted in the study, workers still running)


@dataclass(frozen=True)
class Launched:
    """How the workers ended (by name: exit code) and the runs the study counts at the end."""

    exit_codes: dict[str, int]
    runs: int

    @property
    def ok(self) -> bool:
        """At least one worker ended well: the study went on without the others (none is restarted)."""
        return any(code == 0 for code in self.exit_codes.values())


def world_cap(max_world_size: int | None, share: Share) -> int:
    """Ranks a worker's runs may use: its share, or less where --max-world-size says so."""
    return share.max_world_size if max_world_size is None else min(max_world_size, share.max_world_size)


def worker_argv(file: Path, options: dict[str, Any], settings: TuneSettings, share: Share, *, debug: bool = False) -> list[str]:
    """`effsearch tune FILE ...` for every worker: the launch's own options, its study, storage and artifacts
    folder named (all workers join one study), and runs capped at the worker's share."""
    cap = world_cap(options.get("max_world_size"), share)
    # Artifacts named as this machine sees them: a worker elsewhere would put the default under its own cwd.
    artifacts = settings.artifacts or artifacts_root(settings.storage_url)
    values = {**options, "study": settings.study_name, "storage": settings.storage_url, "max_world_size": cap, "artifacts": artifacts}
    argv = [*(["--debug"] if debug else []), "tune", str(file.resolve())]
    for key, value in values.items():
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, Path):
            argv += [flag, str(value.resolve())]
        else:
            argv += [flag, str(value)]
    return argv


class StudyWatch:
    """The study's runs as every worker adds them, read from the storage by the launching process."""

    def __init__(self, name: str, url: str) -> None:
        self.name, self.url = name, url
        self._study: optuna.Study | None = None
        self.runs = 0

    def poll(self) -> int:
        from effsearch.storage import open_storage
        from effsearch.study import runs_counted

        try:
            if self._study is None:
                if self.url.startswith("sqlite:///") and not Path(self.url.removeprefix("sqlite:///")).exists():
                    return self.runs  # no worker has made it yet; opening would race them to make the tables
                self._study = optuna.load_study(study_name=self.name, storage=open_storage(self.url, None, None))
            self.runs = runs_counted(self._study)
        except Exception:  # not made yet, or a busy storage: the next poll tries again
            pass
        return self.runs


def exit_line(name: str, code: int) -> str:
    """How a worker ended, in words."""
    if code < 0:
        try:
            return f"{name} was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"{name} was killed by signal {-code}"
    return f"{name} exited with code {code}"


def wait(workers: Sequence[Worker], watch: StudyWatch, *, on_progress: OnProgress | None = None, poll_s: float = 1.0) -> Launched:
    """Wait for every worker, telling on_progress the study's runs as they change; Ctrl-C cancels them."""
    codes: dict[str, int] = {}
    try:
        while len(codes) < len(workers):
            for worker in workers:
                if worker.name not in codes and (code := worker.poll()) is not None:
                    codes[worker.name] = code
            if on_progress is not None:
                on_progress(watch.poll(), len(workers) - len(codes))
            if len(codes) < len(workers):
                time.sleep(poll_s)
    except KeyboardInterrupt:
        # Workers in this terminal's process group got the Ctrl-C too: a second signal would cut short
        # their recording of the interrupted run, so those still running after a few seconds are stopped.
        deadline = time.monotonic() + CTRL_C_GRACE_S
        while time.monotonic() < deadline and any(w.poll() is None for w in workers if w.name not in codes):
            time.sleep(0.2)
        for worker in workers:
            if worker.name not in codes and worker.poll() is None:
                worker.cancel()  # each requeues its run (SIGTERM) and exits
        raise
    return Launched(codes, watch.poll())


def start(launcher: Launcher, n: int, argv: Sequence[str], share: Share, storage_url: str) -> list[Worker]:
    """Start the workers once the storage is one they all reach."""
    check_storage(storage_url, launcher)
    return list(launcher.start(n, argv, share))
