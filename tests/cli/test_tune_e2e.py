"""`effsearch tune` and `effsearch pareto` end to end: the real CLI on scikit-learn's digits."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort
import optuna
import pytest
from optuna.trial import TrialState

from effsearch.plugins import choose_energy_meter
from effsearch.record import read_meta
from effsearch.space import CORE_PARAMS

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits_cnn.py"
STUDY = "digits-cnn"

ROW_KEYS = {"trial", "run", "params", "prune_achieved", "metrics", "onnx", "untrained", "within_noise", "speedup_flag"}
METRIC_KEYS = {
    "accuracy", "latency_ms", "latency_p90_ms", "flops", "param_count", "size_bytes",
    "energy_j", "infer_energy_mj", "energy_source", "train_s",
}

# A small MLP on the digits: a run takes a fraction of a second, so these tests pay mostly for start-up.
TINY = """\
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    import effsearch


    def build():
        return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


    def load():
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        d = load_digits()
        x = torch.tensor(d.data / 16.0, dtype=torch.float32)
        y = torch.tensor(d.target, dtype=torch.long)
        xt, xv, yt, yv = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
        return TensorDataset(xt, yt), TensorDataset(xv, yv)


    LOSS = None
    effsearch.register(model=build, data=load, name=NAME, loss=LOSS, epochs=1)
"""


def tiny_source(name: str, loss: str = "None") -> str:
    return TINY.replace("NAME", repr(name)).replace("LOSS = None", f"LOSS = {loss}")


def _effsearch(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The CLI as conftest's run_cli runs it, for the module-scoped study."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "effsearch", *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=env
    )


def _storage(cwd: Path) -> str:
    return f"sqlite:///{cwd / 'studies' / 'effsearch.db'}"


def _load(cwd: Path, name: str = STUDY) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=_storage(cwd))


def _leads(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("lead")]


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """One 3-run study of the digits CNN, shared by the read-only tests below (about 20 s on 2 cores)."""
    cwd = tmp_path_factory.mktemp("digits")
    proc = _effsearch(cwd, "tune", str(DIGITS), "--trials", "3", "--epochs", "1")
    return cwd, proc


@pytest.mark.slow
def test_tune_exits_0_and_prints_the_front_table(digits) -> None:
    cwd, proc = digits
    assert proc.returncode == 0, proc.stderr
    assert f"Pareto front of {STUDY}" in proc.stdout
    for column in ("trial", "precision", "accuracy", "latency ms", "energy J"):
        assert column in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_pareto_json_is_only_a_json_array_of_the_contract_rows(digits, run_cli) -> None:
    cwd, _ = digits
    proc = run_cli("pareto", "--json", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)  # fails if anything but the JSON reached stdout
    assert isinstance(rows, list) and rows
    meter = choose_energy_meter(None)
    source = meter.name if meter.measured else "estimate"
    for row in rows:
        assert set(row) == ROW_KEYS
        assert set(row["params"]) == set(CORE_PARAMS)
        assert METRIC_KEYS <= set(row["metrics"]), METRIC_KEYS - set(row["metrics"])
        assert row["metrics"]["energy_source"] == source
        assert 0.0 <= row["metrics"]["accuracy"] <= 1.0
        assert row["metrics"]["latency_ms"] > 0 and row["metrics"]["energy_j"] > 0
        assert 1 <= row["params"]["world_size"] <= os.cpu_count()


@pytest.mark.slow
def test_front_onnx_files_are_absolute_in_the_trial_folder_and_run(digits, run_cli) -> None:
    cwd, _ = digits
    rows = json.loads(run_cli("pareto", "--json", cwd=cwd).stdout)
    x = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    for row in rows:
        path = Path(row["onnx"])
        assert path.is_absolute()
        # One folder per run, named after its lead trial; one file per precision in it.
        lead = _load(cwd).trials[row["trial"]].user_attrs["run_trial"]
        folder = Path(read_meta(_load(cwd)).artifacts)  # studies/<study>-<a short form of its identifier>
        assert folder.parent == (cwd / "studies").resolve() and folder.name.startswith(f"{STUDY}-")
        assert path.parent == folder / f"run-{lead}"
        precision = row["params"]["precision"]
        assert path.name == ("model.onnx" if precision == "fp32" else f"model.{precision}.onnx")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (out,) = session.run(None, {session.get_inputs()[0].name: x})
        assert out.shape == (1, 10) and np.isfinite(out).all()
        assert path.stat().st_size == row["metrics"]["size_bytes"]


@pytest.mark.slow
def test_study_records_objectives_baseline_runs_and_environment(digits) -> None:
    cwd, _ = digits
    study = _load(cwd)
    assert study.metric_names == ["accuracy", "latency_ms", "energy_j"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]

    trials = study.get_trials(deepcopy=False)
    first = trials[0]
    assert first.number == 0
    assert first.user_attrs.get("baseline") is True
    assert first.params["prune_ratio"] == 0.0 and first.params["precision"] == "fp32"
    assert first.state == TrialState.COMPLETE
    for t in trials:
        assert set(t.params) >= set(CORE_PARAMS)

    leads = _leads(study)
    assert len(leads) == 3
    by_run: dict[int, list[optuna.trial.FrozenTrial]] = defaultdict(list)
    for t in trials:
        by_run[t.user_attrs["run_trial"]].append(t)
    assert sorted(by_run) == sorted(t.number for t in leads)
    for lead in leads:
        group = by_run[lead.number]
        # Every trial of one training run shares the run number and every parameter but the precision.
        assert {t.user_attrs["run"] for t in group} == {lead.user_attrs["run"]}
        precisions = [t.params["precision"] for t in group]
        assert len(precisions) >= 2 and len(set(precisions)) == len(precisions)
        for t in group:
            assert {k: v for k, v in t.params.items() if k != "precision"} == {
                k: v for k, v in lead.params.items() if k != "precision"
            }
    assert sorted(t.user_attrs["run"] for t in leads) == [1, 2, 3]

    meta = study.user_attrs["effsearch"]
    assert meta["user_file"] == str(DIGITS)
    assert meta["user_file_sha256"] == hashlib.sha256(DIGITS.read_bytes()).hexdigest()
    env = meta["environment"]
    assert env["host"] and env["cpu"]
    assert env["versions"]["torch"] and env["versions"]["optuna"] and env["versions"]["onnxruntime"]


@pytest.mark.slow
def test_a_larger_total_extends_by_one_run_and_the_same_total_does_nothing(digits, run_cli, tmp_path) -> None:
    src, _ = digits
    shutil.copytree(src / "studies", tmp_path / "studies")
    before = len(_load(tmp_path).get_trials(deepcopy=False))

    proc = run_cli("tune", str(DIGITS), "--trials", "4", "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    study = _load(tmp_path)
    assert len(_leads(study)) == 4
    assert max(t.user_attrs["run"] for t in _leads(study)) == 4
    after = len(study.get_trials(deepcopy=False))
    assert after > before

    proc = run_cli("tune", str(DIGITS), "--trials", "4", "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    assert len(_load(tmp_path).get_trials(deepcopy=False)) == after
    assert f"Pareto front of {STUDY}" in proc.stdout


def test_pareto_without_storage_exits_2_with_one_line(run_cli, tmp_path) -> None:
    for args in (("pareto",), ("pareto", "--json")):
        proc = run_cli(*args)
        assert proc.returncode == 2
        assert proc.stdout == ""
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("error:") and "effsearch tune" in proc.stderr


def test_nan_loss_fails_every_run_with_its_reason_and_exits_1(run_cli, write_user_file, tmp_path) -> None:
    path = write_user_file(tiny_source("nan-loss", "lambda out, y: nn.functional.cross_entropy(out, y) * float('nan')"))
    proc = run_cli("tune", str(path), "--trials", "2")
    assert proc.returncode == 1, proc.stderr
    assert "non-finite loss" in proc.stdout  # the failures table
    # Each failed run is one warning line on stderr, the baseline (run 1) included; no traceback.
    for run in (1, 2):
        assert f"run {run} failed: non-finite loss" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr

    study = _load(tmp_path, "nan-loss")
    leads = _leads(study)
    assert len(leads) == 2  # the first failure did not stop the study
    for t in leads:
        assert t.state == TrialState.FAIL
        assert "non-finite loss" in t.user_attrs["fail_reason"]

    # A study without one complete trial has an empty front.
    proc = run_cli("pareto", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


@pytest.mark.slow
def test_objectives_make_the_study_and_other_objectives_cannot_resume_it(run_cli, write_user_file, tmp_path) -> None:
    path = write_user_file(tiny_source("two-objectives"))
    proc = run_cli("tune", str(path), "--trials", "1", "--objectives", "accuracy,size_bytes")
    assert proc.returncode == 0, proc.stderr
    study = _load(tmp_path, "two-objectives")
    assert study.metric_names == ["accuracy", "size_bytes"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    n = len(study.get_trials(deepcopy=False))

    # Same directions (maximize, minimize), another objective: refused all the same.
    proc = run_cli("tune", str(path), "--trials", "2", "--objectives", "accuracy,latency_ms")
    assert proc.returncode == 2
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and "size_bytes" in errors[0] and "latency_ms" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(_load(tmp_path, "two-objectives").get_trials(deepcopy=False)) == n


def test_latency_at_a_batch_gives_throughput_and_the_study_keeps_its_batch(run_cli, write_user_file, tmp_path) -> None:
    path = write_user_file(tiny_source("batched"))
    proc = run_cli("tune", str(path), "--trials", "1", "--latency-batch", "16", "--objectives", "accuracy,throughput_sps")
    assert proc.returncode == 0, proc.stderr
    study = _load(tmp_path, "batched")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MAXIMIZE"], "throughput is maximized"
    assert read_meta(study).latency.batch == 16
    rows = json.loads(run_cli("pareto", "--json").stdout)
    for row in rows:
        m = row["metrics"]
        # One call at batch 16 takes latency_ms (re-measured with the front): throughput is 16 over it.
        assert m["throughput_sps"] == pytest.approx(16 / (m["latency_ms"] / 1e3), rel=1e-6)

    proc = run_cli("tune", str(path), "--trials", "2", "--objectives", "accuracy,throughput_sps")
    assert proc.returncode == 2
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and "batch 16" in errors[0] and "--latency-batch 16" in errors[0], proc.stderr

    proc = run_cli("tune", str(path), "--study", "other", "--latency-batch", "1000")
    assert proc.returncode == 2 and "--latency-batch 1000 exceeds the 360 samples" in proc.stderr, proc.stderr
