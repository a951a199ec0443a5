"""Workers through Optuna's gRPC storage proxy: opened from a grpc:// URL, ranked apart, and a dead one
found by effsearch's lease (the proxy carries no Optuna heartbeat)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

pytest.importorskip("grpc")

from effsearch import record  # noqa: E402
from effsearch.errors import StudyError  # noqa: E402
from effsearch.storage import open_storage, proxied_storage, resolve_url  # noqa: E402
from effsearch.study.lease import Lease  # noqa: E402
from effsearch.study.loop import fail_dead_workers  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(url: str) -> str:
    """Start a storage proxy for `url` in a daemon thread of this test process; returns its grpc:// URL."""
    port = _free_port()
    backend = proxied_storage(url)
    threading.Thread(
        target=optuna.storages.run_grpc_proxy_server, args=(backend,), kwargs={"host": "127.0.0.1", "port": port}, daemon=True
    ).start()
    return f"grpc://127.0.0.1:{port}"


@pytest.fixture
def proxy(tmp_path: Path) -> str:
    return _serve(f"sqlite:///{tmp_path / 'effsearch.db'}")


@pytest.fixture
def new_study(proxy: str) -> Iterator[Callable[[], optuna.Study]]:
    """The study `s` through the proxy, opened by a new client each call (a worker of its own)."""
    opened: list[optuna.storages.BaseStorage] = []

    def open_one() -> optuna.Study:
        storage = open_storage(resolve_url(proxy))
        opened.append(storage)
        return optuna.create_study(study_name="s", storage=storage, directions=["minimize", "minimize"], load_if_exists=True)

    yield open_one
    for storage in opened:
        storage.close()


def test_a_grpc_url_opens_a_proxy_client_and_a_malformed_one_is_refused_in_one_line(proxy: str) -> None:
    assert isinstance(open_storage(resolve_url(proxy)), optuna.storages.GrpcStorageProxy)
    with pytest.raises(StudyError, match="grpc://HOST:PORT"):
        resolve_url("grpc://127.0.0.1")
    with pytest.raises(StudyError, match="not another proxy"):
        proxied_storage(proxy)


def test_no_proxy_at_the_port_is_said_with_the_command_that_starts_one() -> None:
    from effsearch import storage

    with pytest.raises(StudyError, match="effsearch storage-proxy"):
        storage._open_proxy(f"grpc://127.0.0.1:{_free_port()}", wait_s=0.5)


def test_workers_joining_together_through_the_proxy_get_distinct_ranks_and_a_rejoin_keeps_its_own(new_study) -> None:
    study = new_study()
    study_id = study._study_id
    assert record.join_workers(study._storage, study_id, "first", lambda r: {"seed": r}) == 0
    ranks: dict[str, int] = {}

    def join(token: str) -> None:
        worker = new_study()  # each with its own client, as separate processes would be
        ranks[token] = record.join_workers(worker._storage, study_id, token, lambda r: {"seed": 100 + r})

    threads = [threading.Thread(target=join, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ranks.values()) == list(range(1, 7))
    assert record.join_workers(study._storage, study_id, "w3", lambda r: {"seed": -1}) == ranks["w3"]
    workers = record.read_workers(new_study())
    assert [w["rank"] for w in workers] == list(range(7))
    assert [w["seed"] for w in workers] == [0] + [100 + r for r in range(1, 7)]


def test_a_worker_that_died_choosing_its_rank_blocks_no_one(new_study) -> None:
    study = new_study()
    assert record.join_workers(study._storage, study._study_id, "a", lambda r: {}) == 0
    study.set_user_attr("worker:zz-died", {"proposal": 1})  # killed between its proposal and its rank
    study.set_user_attr("worker:0-died", {"proposal": 2})
    assert record.join_workers(study._storage, study._study_id, "b", lambda r: {}) == 3


def test_a_worker_that_stops_renewing_its_lease_is_found_dead_through_the_proxy(new_study) -> None:
    """The lease of a worker on another machine runs out: another worker fails the run and queues it again."""
    dead = new_study()
    trial = dead.ask()
    record.write(trial, worker={"host": "another-machine", "pid": 1, "trial": trial.number}, lease=record.lease_until(trial.number, 0.6))
    judge = new_study()
    assert fail_dead_workers(judge) == []  # its lease still holds
    time.sleep(0.8)
    assert fail_dead_workers(judge) == [trial.number]
    states = [t.state for t in new_study().get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL, TrialState.WAITING]
    reason = record.read(new_study().trials[0]).reason
    assert "stopped renewing its lease" in reason


def test_a_live_workers_lease_renewed_through_the_proxy_keeps_its_run(new_study) -> None:
    study = new_study()
    trial = study.ask()
    with Lease(trial, interval_s=0.1, grace_s=0.3):
        time.sleep(1.0)  # three times its grace: only the renewals keep it alive
        assert fail_dead_workers(new_study()) == []
    assert new_study().trials[0].state == TrialState.RUNNING


@pytest.mark.postgres
def test_ranks_and_leases_through_a_proxy_of_postgresql(pg_db: str) -> None:
    url = _serve(f"postgresql://postgres@127.0.0.1:5432/{pg_db}")
    storage = open_storage(resolve_url(url))
    study = optuna.create_study(study_name="pg", storage=storage, directions=["minimize"])
    assert [record.join_workers(storage, study._study_id, t, lambda r: {}) for t in ("a", "b", "a")] == [0, 1, 0]
    trial = study.ask()
    record.write(trial, worker={"host": "another-machine", "pid": 1, "trial": trial.number}, lease=record.lease_until(trial.number, 0.3))
    time.sleep(0.5)
    assert fail_dead_workers(study) == [trial.number]
    storage.close()


@pytest.mark.slow  # a real run of the digits example: about 15 s alone, more on a busy machine
def test_tune_runs_through_the_storage_proxy_command_which_warns_when_bound_beyond_this_machine(tmp_path: Path, cli, examples: Path) -> None:
    import os
    import subprocess
    import sys

    port = _free_port()
    db = f"sqlite:///{tmp_path / 'p.db'}"
    args = [sys.executable, "-m", "effsearch", "storage-proxy", "--storage", db, "--port", str(port)]
    proc = subprocess.Popen([*args, "--host", "0.0.0.0"], stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "300"})
    try:
        said = [proc.stderr.readline() for _ in range(2)]
        assert "no authentication or TLS" in said[0] and f"grpc://0.0.0.0:{port}" in said[1]
        url = f"grpc://127.0.0.1:{port}"
        r = cli("tune", str(examples / "digits_cnn.py"), "--trials", "1", "--epochs", "1", "--storage", url, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        study = optuna.load_study(study_name="digits-cnn", storage=open_storage(db, None, None))
        assert [t.state for t in study.trials if t.user_attrs.get("lead")] == [TrialState.COMPLETE]
        assert [w["rank"] for w in record.read_workers(study)] == [0]
        taken = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert taken.returncode != 0 and "choose another --port" in taken.stderr and len(taken.stderr.strip().splitlines()) == 1
    finally:
        proc.terminate()
        proc.wait(timeout=10)
