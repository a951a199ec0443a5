"""Screening: a configuration's cost is known before it trains, and limits screen out what cannot meet them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import optuna
import pytest
from optuna.trial import TrialState

from effsearch import record
from effsearch.config import TrainConfig
from effsearch.measure.blocks import measure_blocks
from effsearch.results.front import front_rows
from effsearch.run.untrained import _export, measure_untrained
from effsearch.study import runs_counted
from effsearch.userfile import load_user_file

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits_cnn.py"


def _config(ratio: float) -> TrainConfig:
    return TrainConfig(batch_size=128, lr=3e-3, lr_schedule="cosine", clip_norm=0.0, prune_ratio=ratio, world_size=1, epochs=1, seed=0)


def _graph(path: str | Path) -> tuple[list[str], set[tuple[int, ...]]]:
    """Node types in order and the shapes of the weights. An untrained model's identical tensors (BatchNorm's
    initial statistics) are stored once and shared through Identity nodes, which onnxruntime removes."""
    model = onnx.load(str(path))
    return [n.op_type for n in model.graph.node if n.op_type != "Identity"], {tuple(i.dims) for i in model.graph.initializer}


@pytest.mark.slow
def test_untrained_and_trained_artifacts_have_one_graph_and_latency_within_noise(run_cli, tmp_path) -> None:
    space = tmp_path / "space.toml"
    space.write_text('world_size = 1\nprune_ratio = 0.5\n\n[precision]\nchoices = ["fp32"]\n')
    result = run_cli("tune", str(DIGITS), "--trials", "1", "--epochs", "1", "--space", str(space))
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="digits-cnn", storage=f"sqlite:///{tmp_path / 'studies' / 'effsearch.db'}")
    (trained,) = [t for t in record.read_all(study, states=(TrialState.COMPLETE,))]
    before, after = trained.record.untrained["size_bytes"], trained.metrics["size_bytes"]
    assert abs(before - after) <= 0.01 * after, (before, after)

    uf = load_user_file(DIGITS)
    untrained, flops, params = _export(uf, uf.registration.data(), 0.5, "l2", 0, tmp_path / "untrained")
    assert _graph(untrained) == _graph(trained.onnx), "the same node types and tensor shapes"
    assert (flops, params) == (trained.metrics["flops"], trained.metrics["param_count"])
    sample = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    timed = measure_blocks({"trained": Path(trained.onnx), "untrained": untrained}, "trained", sample)
    assert 0.8 <= timed["untrained"].ratio <= 1.25, timed


def test_untrained_figures_of_every_precision_are_measured_as_ratios_to_dense() -> None:
    uf = load_user_file(ROOT / "tests" / "userfiles" / "tiny_mlp.py")
    datasets = uf.registration.data()
    from effsearch.measure.metric import stack_dataset

    val = stack_dataset(datasets[1])
    calib = [stack_dataset(datasets[0], limit=64).inputs]
    dense = measure_untrained(uf, datasets, _config(0.0), ("fp32", "int8_dynamic"), calibration=calib, sample=val.inputs[:1])
    pruned = measure_untrained(uf, datasets, _config(0.5), ("fp32", "int8_dynamic"), calibration=calib, sample=val.inputs[:1])
    assert set(dense) == set(pruned) == {"fp32", "int8_dynamic"}
    assert 0.5 <= dense["fp32"].latency_ratio <= 2.0, "the dense model against itself"
    assert pruned["fp32"].param_count < dense["fp32"].param_count and pruned["fp32"].flops < dense["fp32"].flops
    assert pruned["fp32"].size_bytes < dense["fp32"].size_bytes


def _screening_sampler():
    spec = importlib.util.spec_from_file_location("bench_screening_sampler", ROOT / "benchmarks" / "screening_sampler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_screened_configurations_are_recorded_untrained_and_kept_off_the_front(run_cli, tmp_path) -> None:
    # Whether the sampler learns from them (a share of screened suggestions far below random's over a 40-run
    # study) is a statistical figure: benchmarks/screening_sampler.py prints it against its goal.
    bench = _screening_sampler()
    limit_mb = bench.size_limit_mb()  # prune ratios >= 0.5 fit in int8, lower ones fit in nothing
    result = run_cli(*bench.tune_args(tmp_path, 6, limit_mb), timeout=600)
    assert result.returncode == 0, result.stderr
    assert "screened out before training" in result.stderr
    study = optuna.load_study(study_name="wide-mlp", storage=f"sqlite:///{tmp_path / 'studies' / 'effsearch.db'}")
    screened, _, _ = bench.screened_shares(study)
    assert sum(screened) >= 2, "the limit screened configurations out"
    assert runs_counted(study) == 6, "screened suggestions are no runs: the study trained its six"
    for t in record.read_all(study, states=(TrialState.PRUNED,)):
        assert t.record.screened.startswith("screened: size ≥ ") and t.infeasible and t.run == 0
    for t in record.read_all(study):
        if t.record.screened is not None:
            assert not t.is_training_run
    # The front a user is shown (and exports from) holds only configurations that meet the limit.
    front = front_rows(study)
    limit_bytes = limit_mb * 1e6
    assert front and all(r.metrics["size_bytes"] <= limit_bytes for r in front), [(r.trial, r.metrics["size_bytes"]) for r in front]


def test_fifty_screened_suggestions_in_a_row_stop_tune_with_the_closest_configuration(write_user_file, run_cli, tmp_path) -> None:
    space = tmp_path / "space.toml"
    space.write_text('world_size = 1\nbatch_size = 128\nprune_importance = "l2"\nprune_when = "start"\nprecision = "fp32"\n')
    user = Path(__file__).resolve().parents[1] / "userfiles" / "tiny_mlp.py"
    result = run_cli("tune", str(user), "--trials", "5", "--space", str(space), "--max-size-mb", "0.000001", timeout=600)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    assert "50 configurations in a row were screened out" in lines[0] and "size <= 1e-06 MB" in lines[0]
    assert "the closest (prune_ratio " in lines[0] and "relax the limit" in lines[0]
    study = optuna.load_study(study_name="tiny-mlp", storage=f"sqlite:///{tmp_path / 'studies' / 'effsearch.db'}")
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert len(pruned) == 50
    assert [t.state for t in study.trials if t.user_attrs.get("baseline")] == [TrialState.COMPLETE], "the baseline is never screened"
