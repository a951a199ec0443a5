"""benchmarks/workers.py on a small load: two workers replaying eight runs on SQLite, directly and through the
proxy; one real worker running the tiny model once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "workers.py"


def test_two_workers_replay_eight_runs_directly_and_through_the_proxy(tmp_path: Path) -> None:
    pytest.importorskip("grpc")
    url = f"sqlite:///{tmp_path / 'w.db'}"
    r = subprocess.run(
        [sys.executable, str(BENCHMARK), "--workers", "2", "--runs", "8", "--real", "none", "--storage", url, "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    rows = out["rows"]
    assert out["real"] == []
    assert [(row["route"], row["workers"]) for row in rows] == [("direct", 2), ("proxy", 2)]
    for row in rows:
        # Each run is its lead trial plus its three other precisions, all finished.
        assert row["runs"] == 8 and row["trials"] == 32
        assert row["suggestions_per_s"] > 0 and row["max_connections"] is None
    storage = optuna.storages.RDBStorage(url)
    for summary in storage.get_all_studies():
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)
        assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
        leads = [t for t in trials if t.user_attrs.get("lead")]
        assert len(leads) == 8 and len({t.number for t in leads}) == 8


def test_one_real_worker_runs_the_tiny_model_through_the_local_launcher(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    r = subprocess.run(
        [sys.executable, str(BENCHMARK), "--workers", "none", "--real", "1", "--real-runs", "1", "--storage", url, "--json"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["rows"] == []
    [row] = out["real"]
    assert row["launcher"] == "local" and row["workers"] == 1 and row["runs"] == 1 and row["skipped"] is None
    assert row["wall_s"] > 0 and row["runs_per_min"] > 0 and row["max_connections"] is None
    assert not list(tmp_path.glob("worker-logs")), "the workers' logs go to a folder removed after"
