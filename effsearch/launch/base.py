"""What every launcher shares: a worker's share of a machine, the worker's command, and the run of that
command inside an engine's job or task, with the signals before a preemption passed on to it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from effsearch.errors import StudyError

__all__ = ["Launcher", "Share", "Worker", "check_storage", "parse_options", "run_worker", "worker_command"]

# Signals a scheduler sends before it preempts or ends a job: the worker fails its running trial as
# "interrupted" and queues it again (cli/tune.py), then exits.
PREEMPT_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


@dataclass(frozen=True)
class Share:
    """What one worker may use: its cores and GPUs, and the environment that holds it to them."""

    cpus: int
    gpus: int = 0
    env: dict[str, str] = field(default_factory=dict)

    @property
    def max_world_size(self) -> int:
        """Ranks one run may use: a rank per GPU, else per core."""
        return max(1, self.gpus or self.cpus)


class Worker(Protocol):
    """A started worker: a process, a job or a task."""

    name: str
    log: Path | None  # where its output goes, where the launching machine can read it

    def poll(self) -> int | None:
        """Its exit code once it has ended, else None."""

    def cancel(self) -> None:
        """Stop it (the launch was interrupted)."""


class Launcher(Protocol):
    """Starts the workers of one study through an engine."""

    name: str
    leaves_machine: bool  # its workers may run on other machines: SQLite cannot be shared with them

    def share(self, n: int) -> Share:
        """Each of `n` workers' share; a count the engine cannot hold is refused (StudyError)."""

    def start(self, n: int, argv: Sequence[str], share: Share) -> list[Worker]:
        """Start `n` workers, each running `effsearch ARGV` within `share`."""


def worker_command(argv: Sequence[str]) -> list[str]:
    """The command a worker runs, with the Python it runs on (on a node of a cluster: that node's)."""
    return [sys.executable, "-m", "effsearch", *argv]


def run_worker(argv: Sequence[str], env: dict[str, str]) -> int:
    """Run a worker inside an engine's job or task and return its exit code.

    SIGTERM and SIGUSR2 sent to the job are passed on to the worker, which requeues its run and exits;
    the engine's own process stays until it has.
    """
    proc = subprocess.Popen(worker_command(argv), env={**os.environ, **env})

    def forward(signum: int, frame: object) -> None:
        proc.send_signal(signum)

    try:
        before = {sig: signal.signal(sig, forward) for sig in PREEMPT_SIGNALS}
    except ValueError:  # not the main thread (an engine's threaded task): the signals reach the worker directly
        before = {}
    try:
        return proc.wait()
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def parse_options(pairs: Sequence[str], known: Sequence[str], launcher: str) -> dict[str, str]:
    """`--launcher-option KEY=VALUE` pairs as a dict; an unknown key or a pair without `=` is refused."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in known:
            raise StudyError(
                f"--launcher-option {pair}: the {launcher} launcher takes "
                + (", ".join(f"{k}=VALUE" for k in known) if known else "no options")
            )
        options[key] = value.strip()
    return options


def int_option(options: dict[str, str], key: str, default: int | None) -> int | None:
    """An integer launcher option (at least 0), refused in one line when it is not one."""
    if key not in options:
        return default
    value = options[key]
    if not value.isdigit():
        raise StudyError(f"--launcher-option {key}={value}: expected a whole number, e.g. {key}=4")
    return int(value)


def check_storage(url: str, launcher: Launcher) -> None:
    """Workers that can leave this machine need a storage they all reach: SQLite is a file of this one."""
    if launcher.leaves_machine and url.startswith("sqlite"):
        raise StudyError(
            f"--launcher {launcher.name}: its workers may run on other machines, which cannot share the SQLite file {url}; "
            "pass --storage postgresql://USER@HOST/DB, or grpc://HOST:PORT of an `effsearch storage-proxy`"
        )
