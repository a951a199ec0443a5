"""Attention FLOPs: counted (not skipped) and equal to a hand count, whichever op attention traces to.

fvcore counts one multiply-add as one flop. For batch B, heads H, query length L, key length S and head
dim D, q @ k^T takes B*H*L*S*D and attn @ v another B*H*L*S*D; softmax and scaling are elementwise and,
like every elementwise op, not counted.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from effsearch.compress.prune import prune
from effsearch.measure.flops import EXTRA_OP_HANDLES, count_flops

L, E, H, FF = 16, 64, 4, 128
D = E // H
ATTENTION = 2 * H * L * L * D  # both attention matmuls, one sample
PROJECTIONS = L * E * 3 * E + L * E * E  # packed q/k/v in-projection and out-projection
LAYER_NORM = L * E * 5  # fvcore: 5 flops per element of an affine LayerNorm


def _skipped_attention(skipped: dict[str, int]) -> list[str]:
    return [op for op in skipped if "attention" in op or op in ("aten::bmm", "aten::baddbmm", "aten::matmul")]


def test_one_encoder_layer_equals_a_hand_count():
    layer = nn.TransformerEncoderLayer(E, H, dim_feedforward=FF, dropout=0.0, batch_first=True)
    report = count_flops(layer, torch.randn(1, L, E))
    mlp = L * E * FF + L * FF * E
    assert report.flops == PROJECTIONS + ATTENTION + mlp + 2 * LAYER_NORM
    assert not _skipped_attention(report.skipped_ops), report.skipped_ops


def test_counting_leaves_the_fast_path_setting_as_it_was():
    layer = nn.TransformerEncoderLayer(E, H, dim_feedforward=FF, batch_first=True)
    assert torch.backends.mha.get_fastpath_enabled()
    count_flops(layer, torch.randn(1, L, E))
    assert torch.backends.mha.get_fastpath_enabled()


class Attention(nn.Module):
    """Hand-written self-attention: separate q/k/v, with scaled_dot_product_attention or explicit matmuls."""

    def __init__(self, sdpa: bool) -> None:
        super().__init__()
        self.sdpa = sdpa
        self.num_heads = H
        self.q, self.k, self.v, self.o = (nn.Linear(E, E, bias=False) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (p(x).view(b, n, H, D).transpose(1, 2) for p in (self.q, self.k, self.v))
        if self.sdpa:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = torch.softmax(q @ k.transpose(-2, -1) / D**0.5, dim=-1) @ v
        return self.o(out.transpose(1, 2).reshape(b, n, E))


@pytest.mark.parametrize("sdpa", [True, False], ids=["sdpa", "matmul"])
def test_hand_written_attention_equals_a_hand_count(sdpa):
    report = count_flops(Attention(sdpa), torch.randn(1, L, E))
    assert report.flops == 4 * L * E * E + ATTENTION
    assert not _skipped_attention(report.skipped_ops), report.skipped_ops


def _analyse(module: nn.Module, *inputs: torch.Tensor) -> tuple[int, dict[str, int]]:
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(module, inputs).set_op_handle(**EXTRA_OP_HANDLES)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return int(analysis.total()), dict(analysis.unsupported_ops())


class SelfAttention(nn.Module):
    def __init__(self, need_weights: bool, mask: bool) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(E, H, batch_first=True)
        self.need_weights = need_weights
        self.register_buffer("mask", torch.zeros(L, L) if mask else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=self.need_weights, attn_mask=self.mask)[0]


@pytest.mark.parametrize(
    ("need_weights", "mask", "fast", "op"),
    [
        (False, False, True, "aten::_native_multi_head_attention"),  # eval without grad: the fused fast path
        (True, False, False, "aten::bmm"),  # with grad: the composite path
        (True, True, False, "aten::baddbmm"),
        (False, False, False, "aten::scaled_dot_product_attention"),
    ],
)
def test_each_op_multihead_attention_traces_to_counts_the_same(need_weights, mask, fast, op):
    """The handlers themselves, on the ops torch 2.13 traces nn.MultiheadAttention to."""
    module = SelfAttention(need_weights, mask).eval()
    x = torch.randn(2, L, E)
    with torch.set_grad_enabled(not fast):
        graph = torch.jit.trace(module, x, check_trace=False).inlined_graph
        total, skipped = _analyse(module, x)
    assert op in {node.kind() for node in graph.nodes()}
    assert total == 2 * (PROJECTIONS + ATTENTION)
    assert not _skipped_attention(skipped), skipped


def test_pruning_half_the_heads_halves_the_attention_count():
    model = nn.Sequential(nn.TransformerEncoderLayer(E, H, dim_feedforward=FF, dropout=0.0, batch_first=True))
    sample = torch.randn(1, L, E)
    dense = count_flops(model, sample).flops
    prune(model, torch.randn(2, L, E), 0.5)
    pruned = count_flops(model, sample)
    # Two of four heads: q/k/v and out-projections and attention halve; the MLP hidden width halves.
    half_projections = L * E * 3 * (E // 2) + L * (E // 2) * E
    assert pruned.flops == half_projections + ATTENTION // 2 + (L * E * FF // 2) * 2 + 2 * LAYER_NORM
    assert pruned.flops < dense
    assert not _skipped_attention(pruned.skipped_ops), pruned.skipped_ops
