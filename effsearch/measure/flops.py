"""FLOPs and parameters of the (pruned) torch module, counted by fvcore, attention and recurrent layers included."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from math import prod
from typing import Any

import torch

from effsearch import inputs
from effsearch.attention import plain_attention

__all__ = ["FlopsReport", "count_flops", "flops_complete", "EXTRA_OP_HANDLES", "ZERO_BY_CONVENTION"]

# Elementwise ops and per-element reductions fvcore reports as skipped but whose work its convention
# leaves out everywhere (activations, residual adds, scaling, softmax): skipping them leaves the count
# complete. Any other skipped op (an LSTM, a custom kernel) means work went uncounted.
ZERO_BY_CONVENTION = frozenset(
    f"aten::{op}{suffix}"
    for op in (
        "add", "sub", "rsub", "mul", "div", "neg", "abs", "pow", "sqrt", "rsqrt", "exp", "log",
        "sigmoid", "tanh", "gelu", "silu", "elu", "leaky_relu", "hardtanh", "hardswish", "hardsigmoid",
        "softmax", "log_softmax", "mean", "sum", "where", "lt", "le", "ne", "fill", "masked_fill",
    )
    for suffix in ("", "_")
)


def flops_complete(skipped_ops: Mapping[str, int]) -> bool:
    """Whether a count with these skipped ops (as recorded in `flops_skipped_ops`) misses no work."""
    return all(op in ZERO_BY_CONVENTION for op in skipped_ops)


@dataclass(frozen=True)
class FlopsReport:
    """FLOPs per sample (fvcore: one fused multiply-add counts as one) and the ops fvcore skipped.

    skipped_ops holds every op fvcore had no handler for, elementwise ones included; where one of them
    does work the convention counts (see ZERO_BY_CONVENTION), `flops` is a lower bound and `complete` is False.
    """

    flops: int
    param_count: int
    skipped_ops: dict[str, int]

    @property
    def complete(self) -> bool:
        """Whether no work went uncounted; False means `flops` is a lower bound."""
        return flops_complete(self.skipped_ops)


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


def _recurrent_flops(inputs: list[Any], outputs: list[Any]) -> int:
    """aten::lstm / aten::gru / aten::rnn_tanh / aten::rnn_relu, on padded or packed input.

    Every step of every layer and direction multiplies its input by w_ih (gates*hidden x in), its
    recurrent state by w_hh (gates*hidden x hidden, or x proj_size) and, with proj_size, the new hidden
    state by w_hr (proj_size x hidden): the multiply-adds per step are the sizes of those matrices,
    summed over the params list (1-D entries are biases, not counted; nor are the elementwise gates).
    The steps are the leading dims of the input: time x batch, batch_first or not, or the packed tokens.
    """
    steps = prod(_shape(inputs[0])[:-1])
    # params is the last list argument in every overload (lstm's hx is a list too, before it).
    params = [v for v in inputs if v.node().kind() == "prim::ListConstruct"][-1]
    per_step = sum(prod(s) for s in (_shape(p) for p in params.node().inputs()) if len(s) == 2)
    return steps * per_step


# Ops fvcore 0.1.5 has no handler for. Lookups and pure reshapes do no arithmetic: marked as known zero
# rather than left in the skipped list, which is kept for ops whose work goes uncounted.
EXTRA_OP_HANDLES: dict[str, Any] = {
    "aten::scaled_dot_product_attention": _sdpa_flops,
    "aten::_native_multi_head_attention": _native_mha_flops,
    "aten::baddbmm": _baddbmm_flops,
    "aten::lstm": _recurrent_flops,
    "aten::gru": _recurrent_flops,
    "aten::rnn_tanh": _recurrent_flops,
    "aten::rnn_relu": _recurrent_flops,
    "aten::embedding": None,
    "aten::unflatten": None,
    "aten::_pack_padded_sequence": None,
    "aten::_pad_packed_sequence": None,
    "aten::unsafe_chunk": None,  # the gate split of LSTMCell/GRUCell, whose matmuls trace as aten::linear
}


class _Keywords(torch.nn.Module):
    """Takes a dict input's parts positionally (fvcore traces positional inputs) and passes them by name."""

    def __init__(self, module: torch.nn.Module, keys: list[str]) -> None:
        super().__init__()
        self.module = module
        self.keys = keys

    def forward(self, *args: torch.Tensor) -> Any:
        return self.module(**dict(zip(self.keys, args)))


def count_flops(module: torch.nn.Module, sample: Any) -> FlopsReport:
    """Count on one sample (batch 1) with the module in eval mode; sample: a tensor, tuple or dict (inputs.py).

    Attention runs on its composite path (plain_attention), as in the exported graph, so its matmuls are
    counted rather than hidden inside a fused kernel.
    """
    from fvcore.nn import FlopCountAnalysis, parameter_count

    module = module.cpu().eval()
    # fvcore logs a warning per skipped op; they are recorded on the trial instead.
    logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)
    sample = inputs.to_device(sample, torch.device("cpu"))
    traced = _Keywords(module, list(sample)) if isinstance(sample, dict) else module
    analysis = FlopCountAnalysis(traced, tuple(inputs.parts(sample))).set_op_handle(**EXTRA_OP_HANDLES)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with torch.no_grad(), plain_attention():
        total = int(analysis.total())
        skipped = {str(k): int(v) for k, v in analysis.unsupported_ops().items()}
    return FlopsReport(total, int(parameter_count(module)[""]), skipped)
