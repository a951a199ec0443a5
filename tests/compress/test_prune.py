"""Structured pruning on the examples' residual CNN (with BatchNorm) and MLP."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from effsearch.compress.prune import count_params, output_layers, prune
from effsearch.onnx_export import export_onnx
from effsearch.userfile import load_user_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _factory(example: str):
    return load_user_file(EXAMPLES / example).registration.model


@pytest.fixture(scope="module")
def build_cnn():
    return _factory("digits_cnn.py")


@pytest.fixture(scope="module")
def build_mlp():
    return _factory("breast_cancer_mlp.py")


CNN_INPUT = (1, 8, 8)
MLP_INPUT = (30,)


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _still_trains(model: nn.Module, x: torch.Tensor) -> None:
    model.train()
    loss = nn.functional.cross_entropy(model(x), torch.zeros(len(x), dtype=torch.long))
    loss.backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())


@pytest.mark.parametrize(("which", "shape", "n_classes"), [("cnn", CNN_INPUT, 10), ("mlp", MLP_INPUT, 2)])
def test_pruning_shrinks_params_and_keeps_the_forward_pass(request, which, shape, n_classes):
    torch.manual_seed(0)
    model = request.getfixturevalue(f"build_{which}")()
    before = count_params(model)
    report = prune(model, torch.randn(2, *shape), 0.5)
    after = count_params(model)

    assert report.asked == 0.5
    assert (report.params_before, report.params_after) == (before, after)
    assert after < before
    # Halving the channels of coupled layers removes more than half the weights (in and out both shrink).
    assert 0.5 < report.achieved < 0.9
    assert report.achieved == pytest.approx(1 - after / before)

    model.eval()
    with torch.no_grad():
        out = model(torch.randn(5, *shape))
    assert out.shape == (5, n_classes)
    assert torch.isfinite(out).all()
    _still_trains(model, torch.randn(4, *shape))


def test_cnn_output_layer_and_residual_blocks_stay_consistent(build_cnn):
    torch.manual_seed(0)
    model = build_cnn()
    prune(model, torch.randn(2, *CNN_INPUT), 0.5)
    head = _linears(model)[-1]
    assert head.out_features == 10, "the output layer keeps one logit per class"
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 1, "the input channels are the data's"
    # Every BatchNorm follows a conv; its width must match that conv's after pruning.
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [c.out_channels for c in convs] == [b.num_features for b in bns]
    assert max(c.out_channels for c in convs) < 64


def test_mlp_hidden_layers_narrow_and_ends_keep_their_widths(build_mlp):
    torch.manual_seed(0)
    model = build_mlp()
    widths_before = [m.out_features for m in _linears(model)]
    prune(model, torch.randn(2, *MLP_INPUT), 0.5)
    linears = _linears(model)
    assert linears[0].in_features == 30
    assert linears[-1].out_features == 2
    assert [m.out_features for m in linears[:-1]] == [w // 2 for w in widths_before[:-1]]


def test_ratio_zero_changes_nothing(build_cnn):
    torch.manual_seed(0)
    model = build_cnn()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    report = prune(model, torch.randn(2, *CNN_INPUT), 0.0)
    assert report.achieved == 0.0
    assert report.params_before == report.params_after == count_params(model)
    after = model.state_dict()
    assert state.keys() == after.keys()
    assert all(torch.equal(state[k], after[k]) for k in state)


def test_pruning_restores_training_mode(build_mlp):
    model = build_mlp().train()
    prune(model, torch.randn(2, *MLP_INPUT), 0.25)
    assert model.training
    model.eval()
    prune(model, torch.randn(2, *MLP_INPUT), 0.25)
    assert not model.training


def test_a_model_with_only_an_output_layer_is_left_whole():
    model = nn.Linear(30, 2)
    assert output_layers(model, torch.randn(1, 30)) == [model]
    report = prune(model, torch.randn(2, 30), 0.5)
    assert model.out_features == 2 and model.in_features == 30
    assert report.achieved == 0.0


def test_pruned_onnx_is_smaller_than_dense(build_cnn, tmp_path):
    torch.manual_seed(0)
    dense = build_cnn().eval()
    pruned = build_cnn().eval()
    prune(pruned, torch.randn(2, *CNN_INPUT), 0.5)
    batch = torch.randn(4, *CNN_INPUT)
    export_onnx(dense, batch, tmp_path / "dense" / "model.onnx")
    export_onnx(pruned, batch, tmp_path / "pruned" / "model.onnx")
    dense_bytes = (tmp_path / "dense" / "model.onnx").stat().st_size
    pruned_bytes = (tmp_path / "pruned" / "model.onnx").stat().st_size
    # About 4x fewer weights at ratio 0.5: the file shrinks by well over half.
    assert pruned_bytes < 0.5 * dense_bytes, (dense_bytes, pruned_bytes)
