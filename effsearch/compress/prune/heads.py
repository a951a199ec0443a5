"""Attention heads: whole heads removed from nn.MultiheadAttention and from hand-written q/k/v blocks."""

from __future__ import annotations

import logging

import torch
from torch import nn

from effsearch.attention import lean_attention
from effsearch.compress.prune.common import keep_count

log = logging.getLogger(__name__)


# Attribute names hand-written attention blocks keep their head count under.
_HEAD_ATTRS = ("num_heads", "n_heads", "n_head", "num_attention_heads", "heads")
# Child names of their projections: separate q/k/v, or one fused q|k|v Linear.
_Q_NAMES = ("q", "q_proj", "query", "to_q", "wq", "w_q", "q_lin")
_K_NAMES = ("k", "k_proj", "key", "to_k", "wk", "w_k", "k_lin")
_V_NAMES = ("v", "v_proj", "value", "to_v", "wv", "w_v", "v_lin")
_QKV_NAMES = ("qkv", "qkv_proj", "to_qkv", "c_attn", "wqkv", "w_qkv")
# Attributes some blocks keep the attention width (heads x head_dim) under.
WIDTH_ATTRS = ("all_head_size", "inner_dim", "attn_dim")


def prune_mha_heads(model: nn.Module, ratio: float, importance: str) -> None:
    """Remove whole heads of every nn.MultiheadAttention, scored by the magnitude of their weights."""
    for mha in [m for m in model.modules() if type(m) is nn.MultiheadAttention]:
        heads, head_dim = mha.num_heads, mha.head_dim
        keep_n = keep_count(heads, ratio)
        if keep_n >= heads or mha.in_proj_weight is None:  # separate k/v widths: heads are kept
            continue
        with torch.no_grad():
            if importance == "random":
                score = torch.rand(heads)
            else:
                # bn_scale has no BatchNorm to read in attention: magnitude (l2) stands in.
                p = 1 if importance == "l1" else 2
                w_in = mha.in_proj_weight.detach().view(3, heads, head_dim, -1)
                w_out = mha.out_proj.weight.detach().view(-1, heads, head_dim)
                score = w_in.abs().pow(p).sum(dim=(0, 2, 3)) + w_out.abs().pow(p).sum(dim=(0, 2))
        if not lean_attention(mha, score.topk(keep_n).indices.tolist()):
            log.debug("nn.MultiheadAttention with bias_k/bias_v or add_zero_attn keeps its heads")


def _head_attr(module: nn.Module) -> str | None:
    for name in _HEAD_ATTRS:
        value = getattr(module, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return name
    return None


def attention_blocks(model: nn.Module) -> tuple[dict[nn.Module, tuple[str, list[nn.Linear]]], list[nn.Module]]:
    """Hand-written attention blocks: {block: (head attribute, its q/k/v or fused qkv Linears)}, and the
    Linears of blocks whose projections were not recognised (to be left whole)."""
    found: dict[nn.Module, tuple[str, list[nn.Linear]]] = {}
    unknown: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention):
            continue
        attr = _head_attr(module)
        linears = {name.lower(): child for name, child in module.named_children() if isinstance(child, nn.Linear)}
        if attr is None or not linears:
            continue
        heads = getattr(module, attr)
        roles = [next((linears[n] for n in names if n in linears), None) for names in (_Q_NAMES, _K_NAMES, _V_NAMES)]
        fused = next((linears[n] for n in _QKV_NAMES if n in linears), None)
        if all(r is not None for r in roles) and len({r.out_features for r in roles}) == 1 and roles[0].out_features % heads == 0:
            found[module] = (attr, roles)
        elif fused is not None and fused.out_features % (3 * heads) == 0:
            found[module] = (attr, [fused])
        else:
            unknown.extend(linears.values())
    return found, unknown


def residual_layers(model: nn.Module) -> list[nn.Module]:
    # Their width is the residual stream of an attention model; pruning it would touch every block.
    return [m for m in model.modules() if isinstance(m, (nn.Embedding, nn.LayerNorm, nn.MultiheadAttention))]


def count_heads(model: nn.Module) -> int:
    """Attention heads in the model: nn.MultiheadAttention and recognised hand-written blocks."""
    total = sum(m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention))
    found, _ = attention_blocks(model)
    return total + sum(getattr(block, attr) for block, (attr, _l) in found.items())
