"""Preemption: a worker killed with SIGKILL mid-run under the local launcher, and one stopped by SIGTERM.

The user file (sleepy_mlp.py) sleeps in the study's second training step, so each test stops a worker in
the middle of a run it knows; the study is tiny (one step per run) and the lease short.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from effsearch import record
from effsearch.study import runs_counted

SLEEPY = Path(__file__).resolve().parent / "sleepy_mlp.py"
FAST_LEASE = ("--heartbeat-interval", "1", "--heartbeat-grace", "3")


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts, each in its own session: killed with their group at teardown."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait(timeout=10)


def start(tmp_path: Path, marks: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SLEEPY_MARKS": str(marks), "SLEEPY_AT": "2"}
    return subprocess.Popen(
        [sys.executable, "-m", "effsearch", "tune", str(SLEEPY), "--epochs", "1", "--no-early-stop", *FAST_LEASE, *args],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def wait_for_slow_run(marks: Path, proc: subprocess.Popen, timeout: float = 90) -> int:
    """The pid of the rank sleeping in the study's second run."""
    t0 = time.monotonic()
    while not (marks / "slow").exists():
        if proc.poll() is not None:
            pytest.fail(f"exited with {proc.returncode} before the second run: {proc.stderr.read() if proc.stderr else ''}")
        if time.monotonic() - t0 > timeout:
            pytest.fail("the second run did not start training in time")
        time.sleep(0.1)
    return int((marks / "slow").read_text())


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def load(cwd: Path) -> optuna.Study:
    return optuna.load_study(study_name="sleepy-mlp", storage=f"sqlite:///{cwd / 'studies' / 'effsearch.db'}")


def test_a_worker_killed_mid_run_loses_its_run_to_the_lease_and_another_worker_finishes_the_study(
    tmp_path: Path, space: Path, marks: Path, started: list[subprocess.Popen], replaced
) -> None:
    launch = start(tmp_path, marks, "--trials", "4", "--space", str(space), "--workers", "2")
    started.append(launch)
    pid = wait_for_slow_run(marks, launch)
    while parent(pid) != launch.pid:  # up from the rank: its fork server, then the worker the launch started
        pid = parent(pid)
    os.kill(pid, signal.SIGKILL)
    _, err = launch.communicate(timeout=120)

    assert launch.returncode == 0, err
    assert f"(pid {pid}) was killed by SIGKILL" in err
    study = load(tmp_path)
    replaced(study, pid)
    assert sorted(p.name for p in (tmp_path / "worker-logs").iterdir()) == ["worker-0.log", "worker-1.log"]


def test_sigterm_fails_the_running_run_as_interrupted_and_queues_it_again_at_once(
    tmp_path: Path, space: Path, marks: Path, started: list[subprocess.Popen]
) -> None:
    driver = start(tmp_path, marks, "--trials", "3", "--space", str(space))
    started.append(driver)
    wait_for_slow_run(marks, driver)
    driver.send_signal(signal.SIGTERM)  # what SLURM sends before a preemption
    _, err = driver.communicate(timeout=30)

    assert driver.returncode == 130, err
    assert "queued again" in err
    study = load(tmp_path)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    stopped = [t for t in study.get_trials(states=(TrialState.FAIL,)) if record.read(t).reason == "interrupted"]
    assert len(stopped) == 1 and not record.read(stopped[0]).record.baseline
    queued = [t for t in study.get_trials(states=(TrialState.WAITING,)) if t.system_attrs.get("failed_trial") == stopped[0].number]
    assert len(queued) == 1 and queued[0].params == stopped[0].params
