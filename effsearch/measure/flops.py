"""FLOPs and parameters of the (pruned) torch module, counted by fvcore, attention included."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from math import prod
from typing import Any

import torch

from effsearch.onnx_export import plain_attention

__all__ = ["FlopsReport", "count_flops", "EXTRA_OP_HANDLES"]


@dataclass(frozen=True)
class FlopsReport:
    """FLOPs per sample (fvcore: one fused multiply-add counts as one) and the ops fvcore skipped."""

    flops: int
    param_count: int
    skipped_ops: dict[str, int]


def _shape(value: Any) -> list[int]:
    from fvcore.nn.jit_handles import get_shape

    return list(get_shape(value))


def _sdpa_flops(inputs: list[Any], outputs: list[Any]) -> int:
    """aten::scaled_dot_product_attention: q @ k^T and attn @ v.

    q is (..., L, E), k (..., S, E), v (..., S, Ev): L*S*E + L*S*Ev multiply-adds per leading index
    (batch x heads, taken from q so grouped-query attention counts every query head). Softmax and
    scaling are elementwise and not counted, as fvcore counts no elementwise op.
    """
    q, k, v = (_shape(x) for x in inputs[:3])
    rows = prod(q[:-1])
    return rows * k[-2] * q[-1] + rows * v[-2] * v[-1]


def _native_mha_flops(inputs: list[Any], outputs: list[Any]) -> int:
    """aten::_native_multi_head_attention (the eval fast path of nn.MultiheadAttention), batch-first.

    In-projections of query, key and value, the two attention matmuls over all heads (heads x head_dim
    = embed_dim), and the out-projection.
    """
    q, k, v = (_shape(x) for x in inputs[:3])
    embed = q[-1]
    rows_q, rows_k, rows_v = prod(q[:-1]), prod(k[:-1]), prod(v[:-1])
    projections = (2 * rows_q + rows_k + rows_v) * embed * embed
    attention = 2 * rows_q * k[-2] * embed
    return projections + attention


def _baddbmm_flops(inputs: list[Any], outputs: list[Any]) -> int:
    """aten::baddbmm(input, batch1, batch2): the batched matmul (the add is elementwise, not counted)."""
    b1, b2 = _shape(inputs[1]), _shape(inputs[2])
    return b1[0] * b1[1] * b1[2] * b2[2]


# Ops fvcore 0.1.5 has no handler for. Lookups and pure reshapes do no arithmetic: marked as known zero
# rather than left in the skipped list, which is kept for ops whose work goes uncounted.
EXTRA_OP_HANDLES: dict[str, Any] = {
    "aten::scaled_dot_product_attention": _sdpa_flops,
    "aten::_native_multi_head_attention": _native_mha_flops,
    "aten::baddbmm": _baddbmm_flops,
    "aten::embedding": None,
    "aten::unflatten": None,
}


def count_flops(module: torch.nn.Module, sample: torch.Tensor) -> FlopsReport:
    """Count on one sample (batch 1) with the module in eval mode.

    Attention runs on its composite path (plain_attention), as in the exported graph, so its matmuls are
    counted rather than hidden inside a fused kernel.
    """
    from fvcore.nn import FlopCountAnalysis, parameter_count

    module = module.cpu().eval()
    # fvcore logs a warning per skipped op; they are recorded on the trial instead.
    logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)
    analysis = FlopCountAnalysis(module, (sample.cpu(),)).set_op_handle(**EXTRA_OP_HANDLES)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with torch.no_grad(), plain_attention():
        total = int(analysis.total())
        skipped = {str(k): int(v) for k, v in analysis.unsupported_ops().items()}
    return FlopsReport(total, int(parameter_count(module)[""]), skipped)
