"""A run's precisions are recorded whole: finished trials, never one left RUNNING, even if the driver dies."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from effsearch import record
from effsearch.constraints import Constraints
from effsearch.run.pipeline import PrecisionResult
from effsearch.study.recording import Recorder, Shared

DISTS = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "precision": CategoricalDistribution(["fp32", "fp16", "int8_static"])}


def _recorder(study: optuna.Study, limits: Constraints = Constraints()) -> Recorder:
    return Recorder(
        study, objectives=("accuracy", "latency_ms"), constraints=limits, metric_key="accuracy", metric_direction="maximize"
    )


def _result(tmp_path: Path, precision: str, latency: float, error: str | None = None) -> PrecisionResult:
    if error:
        return PrecisionResult(precision, error=error)
    path = tmp_path / f"model.{precision}.onnx"
    path.write_bytes(b"onnx")
    return PrecisionResult(precision, {"accuracy": 0.9, "latency_ms": latency, "size_bytes": 4}, path)


def test_an_extra_precision_is_a_finished_trial_with_its_values_limits_and_run(tmp_path) -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])  # in memory: no storage needed
    lead = study.ask({"lr": DISTS["lr"], "precision": DISTS["precision"]})
    run = record.TrialRecord(run=1, run_trial=lead.number, config={"batch_size": 64})
    rec = _recorder(study, Constraints(max_latency_ms=0.1))
    shared = Shared({"lr": 0.01, "precision": "fp32"}, DISTS, run)
    rec.add_precision(_result(tmp_path, "fp16", 0.3), shared)
    rec.add_precision(_result(tmp_path, "int8_static", 0.0, error="quantization failed"), shared)
    fp16, int8 = record.read_all(study)[1:]
    assert fp16.state == TrialState.COMPLETE and fp16.values == (0.9, 0.3)
    assert fp16.params == {"lr": 0.01, "precision": "fp16"}
    assert fp16.constraints == (0.3 - 0.1,) and fp16.infeasible
    assert (fp16.run, fp16.run_trial, fp16.lead, fp16.config) == (1, lead.number, False, {"batch_size": 64})
    assert fp16.onnx == str((tmp_path / "model.fp16.onnx").resolve())
    assert int8.state == TrialState.FAIL and int8.reason == "quantization failed"


# Records a run's lead trial and then its precisions; the storage write of the second precision kills the
# process right after it returns, where a trial made RUNNING and then told would still be RUNNING.
DRIVER = """
import os, signal, sys
from pathlib import Path
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from effsearch import record
from effsearch.constraints import Constraints
from effsearch.run.pipeline import PrecisionResult
from effsearch.study.recording import Recorder, Shared

url, out = sys.argv[1], Path(sys.argv[2])
study = optuna.create_study(study_name="s", storage=url, directions=["maximize", "minimize"])
storage = study._storage
real = storage.create_new_trial
calls = []

def create_new_trial(*args, **kwargs):
    trial_id = real(*args, **kwargs)
    calls.append(trial_id)
    if len(calls) == 3:  # the lead, one precision, and the next one
        os.kill(os.getpid(), signal.SIGKILL)
    return trial_id

storage.create_new_trial = create_new_trial
dists = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "precision": CategoricalDistribution(["fp32", "fp16", "int8_static", "int8_dynamic"])}
lead = study.ask(dists)
run = record.TrialRecord(run=1, run_trial=lead.number)
record.write(lead, lead=True, **run.user_attrs())
rec = Recorder(study, objectives=("accuracy", "latency_ms"), constraints=Constraints(), metric_key="accuracy", metric_direction="maximize")
for precision in ("fp16", "int8_static", "int8_dynamic"):
    path = out / f"model.{precision}.onnx"
    path.write_bytes(b"onnx")
    rec.add_precision(PrecisionResult(precision, {"accuracy": 0.9, "latency_ms": 0.1}, path), Shared(dict(lead.params), dists, run))
"""


def test_a_driver_killed_between_two_precisions_leaves_none_running(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    proc = subprocess.run([sys.executable, str(script), url, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr  # killed where intended
    trials = record.read_all(optuna.load_study(study_name="s", storage=url))
    precisions = [t for t in trials if not t.lead]
    assert len(precisions) == 2, "both precisions whose storage write began are there"
    assert all(t.state == TrialState.COMPLETE for t in precisions), [t.state for t in precisions]
    assert [t.state for t in trials if t.lead] == [TrialState.RUNNING]  # the run itself: heartbeats fail it
