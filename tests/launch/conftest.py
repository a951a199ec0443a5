"""Shared by the launch tests: a one-step-per-run space, a folder for the sleepy file's marks, the sleepy
file itself with its sleeping rank ended at teardown, and launches killed with their process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# One rank, one batch of 128 per epoch, fp32 only: one training step per run, well under a second.
SPACE = 'world_size = 1\nbatch_size = 128\n\n[precision]\nchoices = ["fp32"]\n'


@pytest.fixture
def space(tmp_path: Path) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(SPACE)
    return path


@pytest.fixture
def marks(tmp_path: Path) -> Path:
    path = tmp_path / "marks"
    path.mkdir()
    return path



SLEEPY = Path(__file__).resolve().parent / "sleepy_mlp.py"


@dataclass(frozen=True)
class Sleepy:
    """sleepy_mlp.py for one test: the environment that makes the study's second training step sleep, and
    the worker running that step (to be stopped mid-run)."""

    file: Path
    marks: Path

    @property
    def env(self) -> dict[str, str]:
        return {"SLEEPY_MARKS": str(self.marks), "SLEEPY_AT": "2"}

    def slow_pid(self, alive: Callable[[], bool] = lambda: True, timeout: float = 90) -> int:
        """The pid of the rank sleeping in the study's second run; fails when `alive()` turns false first."""
        t0 = time.monotonic()
        while not (self.marks / "slow").exists():
            if not alive():
                pytest.fail("the launch ended before the second run")
            if time.monotonic() - t0 > timeout:
                pytest.fail("the second run did not start training in time")
            time.sleep(0.1)
        return int((self.marks / "slow").read_text())

    def worker_of(self, pid: int) -> int:
        """The `effsearch tune` worker a rank belongs to: up from the rank (its fork server, then the worker)
        to the first `-m effsearch` process whose parent is the engine's job or task, not another one of them."""
        while not (_is_effsearch(pid) and not _is_effsearch(_parent(pid))):
            pid = _parent(pid)
            if pid <= 1:
                pytest.fail("no effsearch worker above the sleeping rank")
        return pid


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _is_effsearch(pid: int) -> bool:
    try:
        return b"\0-m\0effsearch\0" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.fixture
def sleepy(marks: Path) -> Iterator[Sleepy]:
    yield Sleepy(SLEEPY, marks)
    # The sleeping rank outlives a killed worker (it sleeps 600 s), and an engine's processes may not be in
    # the test's process group: it is ended here whatever the test did.
    if (marks / "slow").exists():
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
            os.kill(int((marks / "slow").read_text()), signal.SIGKILL)


@pytest.fixture
def launched() -> Iterator[list[subprocess.Popen]]:
    """Launches a test starts, each in its own session: killed with their process group at teardown."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture
def replaced():
    """Check a study whose worker (pid) was killed mid-run: nothing RUNNING, the budget met, its run failed
    once as "worker lost" and completed again, same params, by another worker."""
    from optuna.trial import TrialState

    from effsearch import record
    from effsearch.study import runs_counted

    def check(study, pid: int) -> None:
        assert not study.get_trials(states=(TrialState.RUNNING,)), "nothing left RUNNING"
        assert 4 <= runs_counted(study) <= 5  # the budget met (a second worker may start one more beside a run)
        lost = [t for t in study.get_trials(states=(TrialState.FAIL,)) if "worker lost" in str(record.read(t).reason)]
        assert len(lost) == 1, [record.read(t).reason for t in study.get_trials()]
        again = [t for t in study.get_trials() if t.system_attrs.get("failed_trial") == lost[0].number]
        assert len(again) == 1 and again[0].state == TrialState.COMPLETE and again[0].params == lost[0].params
        assert record.read(again[0]).record.worker["pid"] != pid, "the killed worker is not restarted; another ran it"

    return check
