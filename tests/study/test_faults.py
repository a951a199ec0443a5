"""Faults end cleanly: killed drivers and workers, hangs, Ctrl-C, failing runs and broken user files.

The end-to-end tests drive the real CLI on tests/userfiles/faulty_mlp.py (a tiny MLP whose training
misbehaves as the environment asks), each in its own folder with the default SQLite storage; two small
in-process tests pin down the heartbeat repairs that keep a dropped connection from losing a trial.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from effsearch.study import runs_counted

USERFILES = Path(__file__).resolve().parents[1] / "userfiles"
FAULTY = USERFILES / "faulty_mlp.py"
STUDY = "faulty-mlp"
# One rank, one batch of 128 per epoch, fp32 only: a run costs well under a second beside start-up.
SPACE = 'world_size = 1\nbatch_size = 128\n\n[precision]\nchoices = ["fp32"]\n'
FAST_HEARTBEAT = ("--heartbeat-interval", "1", "--heartbeat-grace", "2")


# -- helpers ---------------------------------------------------------------------------------------


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


def fault_env(fault: str, marks: Path, **extra: str) -> dict[str, str]:
    return {"EFFSEARCH_FAULT": fault, "EFFSEARCH_FAULT_DIR": str(marks), **extra}


@pytest.fixture
def start_driver(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start `effsearch ARGS` in its own session (stdout/stderr to files); killed with its group at teardown."""
    started: list[subprocess.Popen] = []

    def start(*args: str, env: dict[str, str] | None = None, tag: str = "driver") -> subprocess.Popen:
        with open(tmp_path / f"{tag}.out", "w") as out, open(tmp_path / f"{tag}.err", "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "effsearch", *args],
                cwd=tmp_path,
                stdout=out,
                stderr=err,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                start_new_session=True,
            )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait(timeout=10)


def descendants(pid: int) -> list[int]:
    """Every process below pid (children, grandchildren, ...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(what: Callable[[], bool], timeout: float, label: str, proc: subprocess.Popen | None = None) -> float:
    """Poll until what() holds; return the seconds it took. Fails early if proc exits first."""
    t0 = time.monotonic()
    while not what():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the driver exited (code {proc.returncode}) before {label}")
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"no {label} within {timeout:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - t0


def load(cwd: Path, name: str = STUDY) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd / 'studies' / 'effsearch.db'}")


def leads(study: optuna.Study) -> list[FrozenTrial]:
    return sorted((t for t in study.get_trials() if t.user_attrs.get("lead")), key=lambda t: t.number)


def tune_args(space: Path, trials: int, *extra: str) -> tuple[str, ...]:
    return ("tune", str(FAULTY), "--trials", str(trials), "--epochs", "1", "--space", str(space), *extra)


def no_traceback(stderr: str) -> None:
    assert not any(line.startswith("Traceback") for line in stderr.splitlines()), stderr


# -- a killed driver -------------------------------------------------------------------------------


@pytest.mark.slow
def test_killed_driver_leaves_no_process_and_its_trial_is_failed_and_run_again(
    run_cli, start_driver, space, marks, tmp_path
) -> None:
    env = fault_env("hang_if_marked", marks)
    first = run_cli(*tune_args(space, 2, *FAST_HEARTBEAT), env=env)
    assert first.returncode == 0, first.stderr
    before = {t.number: t.values for t in load(tmp_path).get_trials(states=(TrialState.COMPLETE,))}
    assert len(before) == 2

    (marks / "HANG").touch()
    driver = start_driver(*tune_args(space, 3, *FAST_HEARTBEAT), env=env)
    wait_for((marks / "hanging").exists, 120, "run inside training", driver)
    running = [t for t in load(tmp_path).get_trials() if t.state == TrialState.RUNNING]
    assert len(running) == 1
    lost = running[0]
    below = descendants(driver.pid)
    assert len(below) >= 2, "expected the fork server and a rank process below the driver"

    driver.send_signal(signal.SIGKILL)  # the driver only, as a machine losing the process would
    killed_at = time.monotonic()
    driver.wait(timeout=10)
    vanished_s = wait_for(lambda: not any(alive(p) for p in below), 15, "exit of the driver's children")
    print(f"children of the killed driver: {len(below)}, gone {vanished_s:.2f} s after the kill")
    assert vanished_s < 5

    (marks / "HANG").unlink()
    time.sleep(max(0.0, 3 - (time.monotonic() - killed_at)))  # past the 2 s grace period
    again = run_cli(*tune_args(space, 3, *FAST_HEARTBEAT), env=env)
    assert again.returncode == 0, again.stderr
    assert "worker lost" in again.stdout

    study = load(tmp_path)
    trials = {t.number: t for t in study.get_trials()}
    assert trials[lost.number].state == TrialState.FAIL
    retried = [t for t in trials.values() if t.system_attrs.get("failed_trial") == lost.number]
    assert len(retried) == 1, "the lost run is queued again exactly once"
    assert retried[0].state == TrialState.COMPLETE
    assert retried[0].params == lost.params
    for number, values in before.items():
        assert trials[number].state == TrialState.COMPLETE and trials[number].values == values
    assert runs_counted(study) == 3
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_orphaned_by_a_dropped_connection_is_failed_and_queued_again(tmp_path) -> None:
    """After a dropped connection the driver gives RUNNING trials a heartbeat, so an orphan cannot stay RUNNING."""
    from effsearch.storage import open_storage
    from effsearch.study.loop import _adopt_orphans

    storage = open_storage(f"sqlite:///{tmp_path / 'orphans.db'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage, study_name="orphans", directions=["maximize"])
    # What a connection dropped inside optuna's ask() leaves behind: a RUNNING trial that never beat.
    orphan = study.ask()
    orphan.suggest_float("lr", 1e-4, 1e-2, log=True)
    time.sleep(2.2)
    optuna.storages.fail_stale_trials(study)
    assert study.trials[orphan.number].state == TrialState.RUNNING, "optuna alone never fails it"

    _adopt_orphans(study)
    time.sleep(2.2)
    optuna.storages.fail_stale_trials(study)
    trials = study.trials
    assert trials[orphan.number].state == TrialState.FAIL
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert retry.state == TrialState.WAITING and retry.params == orphan.params


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_heartbeat_lost_to_a_dropped_connection_is_one_missed_beat(tmp_path, monkeypatch) -> None:
    """Optuna beats from a bare thread; one storage error must not end the beats (the trial would be failed as lost)."""
    from optuna.storages._heartbeat import HeartbeatThread
    from sqlalchemy.exc import OperationalError

    from effsearch.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'beats.db'}", heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=storage, study_name="beats", directions=["maximize"])
    trial = study.ask()
    beats: list[int] = []
    real = optuna.storages.RDBStorage.record_heartbeat

    def dropped_once(self, trial_id: int) -> None:
        beats.append(trial_id)
        if len(beats) == 1:
            raise OperationalError("UPDATE trial_heartbeats", {}, Exception("terminating connection due to administrator command"))
        real(self, trial_id)

    monkeypatch.setattr(optuna.storages.RDBStorage, "record_heartbeat", dropped_once)
    thread = HeartbeatThread(trial._trial_id, study._storage)
    thread.start()
    time.sleep(3.5)
    thread.join()
    assert len(beats) >= 3, "the thread went on beating"
    optuna.storages.fail_stale_trials(study)
    assert study.trials[trial.number].state == TrialState.RUNNING


# -- a run that hangs, a rank that dies, runs that fail --------------------------------------------


@pytest.mark.slow
def test_a_hanging_run_is_stopped_by_the_trial_timeout_and_the_study_goes_on(run_cli, space, marks, tmp_path) -> None:
    t0 = time.monotonic()
    result = run_cli(*tune_args(space, 2, "--trial-timeout", "5"), env=fault_env("hang", marks))
    wall = time.monotonic() - t0
    assert result.returncode == 1, result.stderr  # every run failed
    no_traceback(result.stderr)
    runs = leads(load(tmp_path))
    assert len(runs) == 2, "the second run starts after the first timed out"
    for t in runs:
        assert t.state == TrialState.FAIL
        assert t.user_attrs["fail_reason"] == "timeout after 5 s"
        seconds = (t.datetime_complete - t.datetime_start).total_seconds()
        assert 5 <= seconds < 45, seconds  # the timeout plus starting the rank process
    assert "timeout after 5 s" in result.stdout
    print(f"two timed-out runs: {wall:.1f} s in all")
    assert wall < 120


def test_a_killed_rank_fails_its_run_with_the_reason_and_is_replaced(run_cli, space, marks, tmp_path) -> None:
    result = run_cli(*tune_args(space, 2), env=fault_env("kill_once", marks))
    assert result.returncode == 0, result.stderr
    no_traceback(result.stderr)
    first, second = leads(load(tmp_path))
    assert first.state == TrialState.FAIL
    reason = first.user_attrs["fail_reason"]
    assert "rank 0" in reason and "SIGKILL" in reason, reason
    assert second.state == TrialState.COMPLETE, second.user_attrs.get("fail_reason")
    assert "SIGKILL" in result.stdout


@pytest.mark.slow
def test_nan_loss_shape_mismatch_and_unexportable_op_are_each_recorded_and_the_study_goes_on(
    run_cli, space, marks, tmp_path
) -> None:
    result = run_cli(*tune_args(space, 4), env=fault_env("staged", marks))
    assert result.returncode == 0, result.stderr
    no_traceback(result.stderr)
    nan, shape, onnx, clean = leads(load(tmp_path))
    assert nan.state == shape.state == onnx.state == TrialState.FAIL
    assert nan.user_attrs["fail_reason"].startswith("non-finite loss (nan)")
    reason = shape.user_attrs["fail_reason"]
    assert "RuntimeError" in reason and "must match the size of tensor" in reason, reason
    assert reason.startswith("rank 0 (line "), "names the rank and the line of the user file"
    reason = onnx.user_attrs["fail_reason"]
    assert reason.startswith("ONNX export failed") and "cummax" in reason, reason
    assert clean.state == TrialState.COMPLETE
    for text in ("non-finite loss", "must match the size", "ONNX export failed"):
        assert text in result.stdout


# -- Ctrl-C ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_fails_the_running_trial_as_interrupted_exits_130_and_the_study_resumes(
    run_cli, start_driver, space, marks, tmp_path
) -> None:
    env = fault_env("hang_if_marked", marks)
    (marks / "HANG").touch()
    driver = start_driver(*tune_args(space, 2), env=env)
    wait_for((marks / "hanging").exists, 120, "run inside training", driver)
    below = descendants(driver.pid)

    os.killpg(driver.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    t0 = time.monotonic()
    code = driver.wait(timeout=30)
    exit_s = time.monotonic() - t0
    print(f"exit {code} {exit_s:.2f} s after SIGINT")
    assert code == 130
    assert exit_s < 8  # 1-2.5 s here: the rank is killed, the trial told, the pool closed
    stderr = (tmp_path / "driver.err").read_text()
    no_traceback(stderr)
    assert "interrupted" in stderr
    wait_for(lambda: not any(alive(p) for p in below), 10, "exit of the driver's children")

    (interrupted,) = leads(load(tmp_path))
    assert interrupted.state == TrialState.FAIL
    assert interrupted.user_attrs["fail_reason"] == "interrupted"

    (marks / "HANG").unlink()
    again = run_cli(*tune_args(space, 2), env=env)
    assert again.returncode == 0, again.stderr
    runs = leads(load(tmp_path))
    assert [t.state for t in runs] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert runs_counted(load(tmp_path)) == 2, "the interrupted run does not count toward --trials"


# -- broken user files -------------------------------------------------------------------------------

_DATA = """
def load():
    x = torch.randn(64, 8)
    y = (x[:, 0] > 0).long()
    return TensorDataset(x[:48], y[:48]), TensorDataset(x[48:], y[48:])
"""

BROKEN = {
    "syntax error": (
        "import effsearch\ndef build(:\n    pass\n",
        ["syntax error at line 2"],
    ),
    "no register()": (
        "import torch\nfrom torch import nn\ndef build():\n    return nn.Linear(8, 2)\n",
        ["register() was never called"],
    ),
    "model factory raises": (
        "import torch\nfrom torch.utils.data import TensorDataset\nimport effsearch\n" + _DATA
        + "def build():\n    raise ValueError('no weights file')\n"
        + "effsearch.register(model=build, data=load)\n",
        ["model factory raised ValueError", "no weights file"],
    ),
    "data factory raises": (
        "import torch\nfrom torch import nn\nimport effsearch\n"
        + "def build():\n    return nn.Linear(8, 2)\n"
        + "def load():\n    raise FileNotFoundError('data.csv')\n"
        + "effsearch.register(model=build, data=load)\n",
        ["data factory raised FileNotFoundError", "data.csv"],
    ),
    "first batch does not fit": (
        "import torch\nfrom torch import nn\nfrom torch.utils.data import TensorDataset\nimport effsearch\n" + _DATA
        + "def build():\n    return nn.Linear(10, 2)\n"
        + "effsearch.register(model=build, data=load)\n",
        ["first batch does not fit", "input 4x8"],
    ),
    "loss not scalar": (
        "import torch\nfrom torch import nn\nfrom torch.utils.data import TensorDataset\nimport effsearch\n" + _DATA
        + "def build():\n    return nn.Linear(8, 2)\n"
        + "effsearch.register(model=build, data=load, loss=lambda out, y: (out - 0.0).sum(dim=1))\n",
        ["loss must return a scalar", "shape 4"],
    ),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_broken_user_file_is_one_line_exit_2_and_writes_nothing(kind, run_cli, write_user_file, tmp_path) -> None:
    source, expected = BROKEN[kind]
    path = write_user_file(source, "broken_model.py")
    result = run_cli("tune", str(path), "--trials", "1", "--epochs", "1")
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: broken_model.py"), lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    assert result.stdout == ""
    assert not (tmp_path / "studies").exists(), "nothing is written for a broken file"
