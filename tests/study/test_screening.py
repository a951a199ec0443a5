"""Screening: a configuration's cost is known before it trains, and limits screen out what cannot meet them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import optuna
import pytest
from optuna.trial import TrialState

from effsearch import record
from effsearch.measure.blocks import measure_blocks
from effsearch.pretrain import _export, measure_untrained
from effsearch.results.front import front_rows
from effsearch.space import TrainConfig
from effsearch.userfile import load_user_file

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits_cnn.py"

WIDE_MLP = """
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    import effsearch


    def load():
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.tensor(d.data / 16.0, dtype=torch.float32)
        y = torch.tensor(d.target, dtype=torch.long)
        return TensorDataset(x[:1400], y[:1400]), TensorDataset(x[1400:], y[1400:])


    effsearch.register(model=lambda: nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)),
                       data=load, name="wide-mlp", epochs=1)
"""
# The training precision changes nothing a limit screens (the graph), so it is fixed with the others.
SPACE = 'world_size = 1\nbatch_size = 128\nprune_importance = "l2"\nprune_when = "start"\ntrain_precision = "fp32"\n\n[precision]\nchoices = ["fp32", "int8_dynamic"]\n'


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


@pytest.mark.slow
def test_the_sampler_learns_from_screened_configurations(write_user_file, run_cli, tmp_path) -> None:
    user = write_user_file(WIDE_MLP, "wide_mlp.py")
    uf = load_user_file(user)
    datasets = uf.registration.data()
    from effsearch.measure.metric import stack_dataset

    val = stack_dataset(datasets[1])
    sizes = {
        r: measure_untrained(uf, datasets, _config(r), ("int8_dynamic",), calibration=[val.inputs[:64]], sample=val.inputs[:1])["int8_dynamic"].size_bytes
        for r in (0.45, 0.5)
    }
    limit_mb = (sizes[0.45] + sizes[0.5]) / 2 / 1e6  # prune ratios >= 0.5 fit in int8, lower ones fit in nothing
    space = tmp_path / "space.toml"
    space.write_text(SPACE)
    result = run_cli(
        "tune", str(user), "--trials", "40", "--space", str(space), "--objectives", "accuracy,size_bytes",
        "--max-size-mb", f"{limit_mb:.6f}", timeout=900,
    )
    assert result.returncode == 0, result.stderr
    assert "screened out before training" in result.stderr
    study = optuna.load_study(study_name="wide-mlp", storage=f"sqlite:///{tmp_path / 'studies' / 'effsearch.db'}")
    leads = [t for t in record.read_all(study) if t.lead and not t.baseline][:60]
    screened = [t.record.screened is not None for t in leads]
    half = len(leads) // 2
    first, second = np.mean(screened[:half]), np.mean(screened[half:])
    print(f"{len(leads)} suggestions: screened share {first:.2f} in the first half, {second:.2f} in the second")
    assert sum(screened) >= 2, "the limit screened configurations out"
    # At random 10 of the 16 prune ratios (below 0.5) would be screened out: 62 % of suggestions. Measured
    # with the default sampler: 43 suggestions, 4 screened (0.10 in the first half, its random startup
    # among them, 0.09 in the second); before the GP's proposals of a screened graph went to TPE, 52
    # suggestions, 0.08 and 0.42.
    random_share = 10 / 16
    assert np.mean(screened) <= random_share / 3 and second <= random_share / 4, (first, second)
    for t in record.read_all(study, states=(TrialState.PRUNED,)):
        assert t.record.screened.startswith("screened: size ≥ ") and t.infeasible and t.run == 0
    for t in record.read_all(study):
        if t.record.screened is not None:
            assert not t.is_training_run
    # The front a user is shown (and exports from) holds only configurations that meet the limit.
    front = front_rows(study)
    limit_bytes = float(f"{limit_mb:.6f}") * 1e6
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
