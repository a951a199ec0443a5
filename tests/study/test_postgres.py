"""Many workers on one PostgreSQL study, and a study that survives its database connections being dropped.

Needs the PostgreSQL server on 127.0.0.1:5432 with trust auth (`.ci/run` starts it). The module makes its
own database and drops it at the end; each test uses its own study name.
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

pytestmark = pytest.mark.postgres

USERFILES = Path(__file__).resolve().parents[1] / "userfiles"
TINY = USERFILES / "tiny_mlp.py"
FAULTY = USERFILES / "faulty_mlp.py"
SPACE = 'world_size = 1\nbatch_size = 128\n\n[precision]\nchoices = ["fp32"]\n'
@pytest.fixture
def space(tmp_path: Path) -> Path:
    path = tmp_path / "space.toml"
    path.write_text(SPACE)
    return path


def url(db: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{db}"


def load(db: str, study: str) -> optuna.Study:
    from sqlalchemy.pool import NullPool

    # No pooled connections in the test process: nothing of ours is left to drop, or to block DROP DATABASE.
    storage = optuna.storages.RDBStorage(f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}", engine_kwargs={"poolclass": NullPool})
    return optuna.load_study(study_name=study, storage=storage)


def start(args: list[str], cwd: Path, tag: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)
    with open(cwd / f"{tag}.out", "w") as out, open(cwd / f"{tag}.err", "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "effsearch", *map(str, args)],
            cwd=cwd,
            stdout=out,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=True,
        )


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen]]:
    """Drivers started by a test; any still running at teardown is killed with its process group."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def tracebacks(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Traceback")]


@pytest.mark.slow
def test_four_workers_started_together_share_one_study_and_its_total(pg_db, space, procs, tmp_path) -> None:
    shared = tmp_path / "shared-artifacts"
    args = ["tune", TINY, "--storage", url(pg_db), "--study", "four-workers", "--trials", "20", "--epochs", "1",
            "--space", space, "--artifacts", shared]
    t0 = time.monotonic()
    # Each worker in its own folder, as on its own machine; only the artifact folder is shared.
    procs.extend(start(args, tmp_path / f"worker-{i}", "tune") for i in range(4))
    codes = [p.wait(timeout=300) for p in procs]
    wall = time.monotonic() - t0
    for i, code in enumerate(codes):
        stderr = (tmp_path / f"worker-{i}" / "tune.err").read_text()
        assert code == 0, stderr
        assert not tracebacks(stderr), stderr

    study = load(pg_db, "four-workers")
    trials = study.get_trials()
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    leads = [t for t in trials if t.user_attrs.get("lead")]
    # Shared, not taken in turn: every worker ran some of the runs, and no two runs wrote one artifact.
    workers = {t.user_attrs["worker"]["pid"] for t in leads}
    assert len(workers) == 4, f"runs were made by {len(workers)} of the 4 workers"
    artifacts = [t.user_attrs["onnx"] for t in trials if t.state == TrialState.COMPLETE]
    assert len(artifacts) == len(set(artifacts)), "two trials share one artifact file"
    finished = [t for t in leads if t.state in (TrialState.COMPLETE, TrialState.FAIL)]
    print(f"4 workers: {len(finished)} runs finished ({sum(t.state == TrialState.COMPLETE for t in finished)} complete) in {wall:.0f} s")
    assert 20 <= len(finished) <= 23
    assert sum(bool(t.user_attrs.get("baseline")) for t in leads) == 1
    # One folder for the study in the shared --artifacts folder (named after the study, with or without its id).
    folder = Path(study.user_attrs["effsearch"]["artifacts"])
    assert folder.parent == shared and folder.name.startswith("four-workers"), folder
    for t in trials:
        if t.state == TrialState.COMPLETE:
            onnx = Path(t.user_attrs["onnx"])
            assert onnx.is_file() and onnx.is_relative_to(folder), onnx
    # Each worker drew and trained with a seed of its own: the first kept --seed 0.
    assert sorted(w["seed"] for w in record.read_workers(study)) == [0, 1, 2, 3]


@pytest.mark.slow
def test_dropped_database_connections_lose_no_finished_trial_and_the_study_finishes(
    pg_db, space, procs, drop_connections, run_cli, tmp_path
) -> None:
    # Each run's one training step sleeps 1 s, so the connections are dropped while runs are under way.
    env = {"EFFSEARCH_FAULT": "slow", "EFFSEARCH_FAULT_SLEEP": "1", "EFFSEARCH_FAULT_DIR": str(tmp_path)}
    args = ["tune", FAULTY, "--storage", url(pg_db), "--study", "dropped", "--trials", "6", "--epochs", "1",
            "--space", space, "--heartbeat-interval", "1", "--heartbeat-grace", "2"]
    driver = start(args, tmp_path, "tune", env)
    procs.append(driver)

    def complete() -> dict[int, list[float]]:
        try:
            study = load(pg_db, "dropped")
        except KeyError:  # not created yet
            return {}
        return {t.number: t.values for t in study.get_trials(states=(TrialState.COMPLETE,)) if t.user_attrs.get("lead")}

    deadline = time.monotonic() + 180
    while not (before := complete()):
        assert driver.poll() is None, (tmp_path / "tune.err").read_text()
        assert time.monotonic() < deadline, "no run completed within 180 s"
        time.sleep(0.5)
    dropped = drop_connections(pg_db)
    time.sleep(1.5)
    dropped += drop_connections(pg_db)
    # Then a burst, so that some drop lands inside a query rather than on an idle pooled connection.
    burst_end = time.monotonic() + 3
    while time.monotonic() < burst_end and driver.poll() is None:
        dropped += drop_connections(pg_db)
        time.sleep(0.05)
    code = driver.wait(timeout=240)
    stderr = (tmp_path / "tune.err").read_text()
    print(f"dropped {dropped} connections; driver exit code {code}; reconnected: {'connection lost' in stderr}")
    assert dropped >= 1
    assert code == 0, stderr  # the driver reconnects and finishes the study: a dropped connection fails nothing
    assert not tracebacks(stderr), stderr
    assert runs_counted(load(pg_db, "dropped")) >= 6, "the first driver reached the study's total"

    after = {t.number: t for t in load(pg_db, "dropped").get_trials()}
    for number, values in before.items():
        assert after[number].state == TrialState.COMPLETE and after[number].values == values

    again = run_cli(*map(str, args), env=env)
    assert again.returncode == 0, again.stderr
    assert not tracebacks(again.stderr), again.stderr
    study = load(pg_db, "dropped")
    assert runs_counted(study) >= 6
    assert not [t.number for t in study.get_trials() if t.state == TrialState.RUNNING]
    for number, values in before.items():
        t = study.get_trials()[number]
        assert t.state == TrialState.COMPLETE and t.values == values
