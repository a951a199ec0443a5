"""Only a structural failure gives a value up, what is given up is never proposed, and workers recording
failures at the same time keep every one of them."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.samplers import BaseSampler

from effsearch.sampler import TrainingRunStartup
from effsearch.space import default_space
from effsearch.study.give_up import GiveUp

PRECISIONS = ("fp32", "fp16", "int8_dynamic", "int8_static")
CFG_A, CFG_B = json.dumps({"lr": 0.01}), json.dumps({"lr": 0.001})


def _give_up(study: optuna.Study, precision: str) -> None:
    give_up = GiveUp(study)
    give_up.failed(precision, "conversion failed", where=CFG_A, trial=1)
    give_up.failed(precision, "conversion failed", where=CFG_B, trial=2)
    assert precision not in give_up.precisions(default_space(1), sampled=None)


class _SetOn(BaseSampler):
    """A model sampler convinced that one precision is best."""

    def __init__(self, value: str) -> None:
        self.value = value

    def infer_relative_search_space(self, study, trial) -> dict[str, Any]:
        return {"precision": CategoricalDistribution(PRECISIONS)}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {"precision": self.value} if "precision" in search_space else {}

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        return self.value


@pytest.mark.parametrize("phase", ["random", "model"])
def test_a_given_up_precision_is_never_a_runs_own(phase) -> None:
    startup = 1000 if phase == "random" else 0
    study = optuna.create_study(directions=["maximize"], sampler=TrainingRunStartup(_SetOn("int8_static"), startup_runs=startup, seed=0))
    _give_up(study, "int8_static")
    drawn = []
    for _ in range(40):
        trial = study.ask()
        drawn.append(trial.suggest_categorical("precision", PRECISIONS))
        study.tell(trial, [0.5])
    assert "int8_static" not in drawn
    assert set(drawn) == {"fp32", "fp16", "int8_dynamic"}, "the others are still searched, all of them"
    assert study.trials[-1].distributions["precision"] == CategoricalDistribution(PRECISIONS), "the study's distribution is unchanged"


def test_two_workers_recording_failures_at_once_keep_both(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    optuna.create_study(study_name="s", storage=url, directions=["maximize"])
    worker_a = optuna.load_study(study_name="s", storage=url)
    worker_b = optuna.load_study(study_name="s", storage=url)
    real = worker_a.set_user_attr
    interleaved = []

    def b_writes_meanwhile(key: str, value: Any) -> None:
        # Worker B records its failure between worker A's read of the study and A's write.
        if not interleaved:
            interleaved.append(key)
            GiveUp(worker_b).failed("fp16", "conversion failed: B", where=CFG_B, trial=7)
        real(key, value)

    worker_a.set_user_attr = b_writes_meanwhile
    GiveUp(worker_a).failed("fp16", "conversion failed: A", where=CFG_A, trial=3)
    assert interleaved

    study = optuna.load_study(study_name="s", storage=url)
    assert "fp16" not in GiveUp(study).precisions(default_space(1), sampled=None), "two settings failed: given up"
    from effsearch.record.given_up import read_failures

    assert sorted(f["trial"] for f in read_failures(study)["fp16"]) == [3, 7], "neither worker's failure is lost"


# -- structural or transient ---------------------------------------------------------------------------


def _fp32_file(tmp_path: Path) -> Path:
    import torch

    path = tmp_path / "model.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2), torch.randn(1, 4), str(path), dynamo=False)
    return path


def test_a_full_disk_or_a_metric_that_raises_is_transient_and_a_refused_graph_structural(tmp_path: Path, monkeypatch) -> None:
    import onnx
    import onnxruntime

    from effsearch.compress.quantize import make_precision
    from effsearch.errors import TrialError
    from effsearch.structural import is_structural

    fp32 = _fp32_file(tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(onnx, "save_model", disk_full)
        patched.setattr(onnx, "save", disk_full)
        with pytest.raises(TrialError) as full:
            make_precision(fp32, "int8_dynamic", [])
    assert not is_structural(full.value)

    def metric(outputs, targets):  # the user's metric
        raise ValueError("labels out of range")

    with pytest.raises(ValueError) as raised:
        metric(None, None)
    assert not is_structural(raised.value)

    with pytest.raises(Exception) as refused:  # onnxruntime refuses a graph it cannot load
        broken = tmp_path / "broken.onnx"
        broken.write_bytes(fp32.read_bytes()[:-40])
        onnxruntime.InferenceSession(str(broken), providers=["CPUExecutionProvider"])
    assert is_structural(refused.value)
    assert is_structural(TrialError("pruning at ratio 0.5 failed", structural="prune_ratio"))


def test_a_precision_failing_twice_on_a_full_disk_is_kept_and_twice_refused_is_given_up(tmp_path: Path, monkeypatch) -> None:
    import onnx

    from effsearch.run.pipeline import measure_precision

    fp32 = _fp32_file(tmp_path)
    measurer = SimpleNamespace(calibration=[], measure=lambda path, flops: {"accuracy": 1.0})
    study = optuna.create_study(directions=["maximize"])
    give_up = GiveUp(study)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(onnx, "save_model", disk_full)
        patched.setattr(onnx, "save", disk_full)
        for trial, where in ((1, CFG_A), (2, CFG_B)):
            result, _, _ = measure_precision(measurer, fp32, "int8_dynamic", 0, {})
            assert result.error and "No space left" in result.error
            give_up.made([result], where=where, trial=trial)
    assert "int8_dynamic" in give_up.precisions(default_space(1), sampled=None), "a full disk says nothing about the precision"

    def refused(path, flops):  # the runtime cannot load the converted graph
        import onnxruntime

        onnxruntime.InferenceSession(str(path.with_suffix(".missing")), providers=["CPUExecutionProvider"])

    measurer = SimpleNamespace(calibration=[], measure=refused)
    for trial, where in ((3, CFG_A), (4, CFG_B)):
        result, _, _ = measure_precision(measurer, fp32, "int8_dynamic", 0, {})
        give_up.made([result], where=where, trial=trial)
    assert "int8_dynamic" not in give_up.precisions(default_space(1), sampled=None)
