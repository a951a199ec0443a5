"""Structured pruning with torch-pruning's dependency graph; the output layer is never pruned.

Attention models (nn.MultiheadAttention, or a module holding q/k/v Linear layers and a head count) keep
their residual width: embeddings, LayerNorms and every layer writing the residual stream stay whole, and
pruning removes MLP hidden channels and whole attention heads, so num_heads shrinks and head_dim holds.
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from effsearch.errors import TrialError
from effsearch.onnx_export import lean_attention

__all__ = ["PruneReport", "prune", "output_layers", "count_params", "count_heads"]

log = logging.getLogger(__name__)

_PRUNABLE = (torch.nn.Linear, torch.nn.modules.conv._ConvNd)
# Attribute names hand-written attention blocks keep their head count under.
_HEAD_ATTRS = ("num_heads", "n_heads", "n_head", "num_attention_heads", "heads")
# Child names of their projections: separate q/k/v, or one fused q|k|v Linear.
_Q_NAMES = ("q", "q_proj", "query", "to_q", "wq", "w_q", "q_lin")
_K_NAMES = ("k", "k_proj", "key", "to_k", "wk", "w_k", "k_lin")
_V_NAMES = ("v", "v_proj", "value", "to_v", "wv", "w_v", "v_lin")
_QKV_NAMES = ("qkv", "qkv_proj", "to_qkv", "c_attn", "wqkv", "w_qkv")
# Attributes some blocks keep the attention width (heads x head_dim) under.
_WIDTH_ATTRS = ("all_head_size", "inner_dim", "attn_dim")


@dataclass(frozen=True)
class PruneReport:
    """The asked ratio next to what pruning achieved on the parameter count (and on attention heads)."""

    asked: float
    params_before: int
    params_after: int
    heads_before: int = 0
    heads_after: int = 0

    @property
    def achieved(self) -> float:
        """Fraction of parameters removed."""
        return 1.0 - self.params_after / self.params_before if self.params_before else 0.0


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def output_layers(model: torch.nn.Module, example: torch.Tensor) -> list[torch.nn.Module]:
    """The prunable layers whose output is the model's output (found by tracing one forward pass)."""
    last: list[torch.nn.Module] = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, _o: last.append(mod))
        for m in model.modules()
        if isinstance(m, _PRUNABLE)
    ]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(example)
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return last[-1:]


def _importance(name: str) -> tp.importance.Importance:
    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    if name == "random":
        return tp.importance.RandomImportance()
    raise TrialError(f"unknown pruning importance {name!r}; use l2, l1, bn_scale or random")


def _keep_count(total: int, ratio: float) -> int:
    # The rounding torch-pruning uses for channels and heads, never below one.
    return max(1, int(total * (1.0 - ratio)))


def _prune_mha_heads(model: nn.Module, ratio: float, importance: str) -> None:
    """Remove whole heads of every nn.MultiheadAttention, scored by the magnitude of their weights."""
    for mha in [m for m in model.modules() if type(m) is nn.MultiheadAttention]:
        heads, head_dim = mha.num_heads, mha.head_dim
        keep_n = _keep_count(heads, ratio)
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


def _attention_blocks(model: nn.Module) -> tuple[dict[nn.Module, tuple[str, list[nn.Linear]]], list[nn.Module]]:
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


def _residual_layers(model: nn.Module) -> list[nn.Module]:
    # Their width is the residual stream of an attention model; pruning it would touch every block.
    return [m for m in model.modules() if isinstance(m, (nn.Embedding, nn.LayerNorm, nn.MultiheadAttention))]


def _prune_channels(
    model: nn.Module,
    example: torch.Tensor,
    ratio: float,
    importance: str,
    attention: dict[nn.Module, tuple[str, list[nn.Linear]]],
    protected: list[nn.Module],
) -> None:
    """torch-pruning's MetaPruner over the model; whole heads of `attention` blocks are removed."""
    num_heads = {lin: getattr(block, attr) for block, (attr, lins) in attention.items() for lin in lins}
    widths = {block: lins[0].out_features // (3 if len(lins) == 1 else 1) for block, (_a, lins) in attention.items()}
    with warnings.catch_warnings():
        # Bare nn.Parameters (position embeddings) are pruned along their last dimension, the residual
        # width: right for them, and in attention models that group is left whole anyway.
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=_importance(importance),
            pruning_ratio=ratio,
            ignored_layers=output_layers(model, example) + protected,
            round_to=None,
            num_heads=num_heads,
            prune_num_heads=bool(num_heads),
            prune_head_dims=False,
            head_pruning_ratio=ratio if num_heads else 0.0,
            # Fresh dicts: torch-pruning updates its shared default ones in place.
            in_channel_groups={},
            out_channel_groups={},
        )
    pruner.step()
    for block, (attr, lins) in attention.items():
        heads = pruner.num_heads[lins[0]]
        setattr(block, attr, heads)
        for name in _WIDTH_ATTRS:
            if getattr(block, name, None) == widths[block]:
                setattr(block, name, lins[0].out_features // (3 if len(lins) == 1 else 1))


def _head_pruning_runs(model: nn.Module, example: torch.Tensor, ratio: float, importance: str) -> bool:
    """Prune a copy, heads included, and say whether it still runs (a forward may hard-code the width)."""
    probe = copy.deepcopy(model)
    state = torch.get_rng_state()  # random importance must pick alike in the probe and for real
    try:
        attention, unknown = _attention_blocks(probe)
        _prune_channels(probe, example, ratio, importance, attention, _residual_layers(probe) + unknown)
        with torch.no_grad():
            probe(example)
        return True
    except Exception as exc:  # the probe's only question is whether it works
        log.debug("head-pruned copy failed: %s: %s", type(exc).__name__, exc)
        return False
    finally:
        torch.set_rng_state(state)


def count_heads(model: nn.Module) -> int:
    """Attention heads in the model: nn.MultiheadAttention and recognised hand-written blocks."""
    total = sum(m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention))
    found, _ = _attention_blocks(model)
    return total + sum(getattr(block, attr) for block, (attr, _l) in found.items())


def prune(model: torch.nn.Module, example: torch.Tensor, ratio: float, importance: str = "l2") -> PruneReport:
    """Remove `ratio` of the channels of every prunable group, in place, keeping coupled layers consistent.

    In attention models `ratio` applies to MLP hidden channels and to the heads of each attention block.
    A hand-written block whose forward does not follow its new head count (checked on a copy first)
    keeps its heads.
    """
    before = count_params(model)
    heads_before = count_heads(model)
    if ratio <= 0.0:
        return PruneReport(ratio, before, before, heads_before, heads_before)
    was_training = model.training
    model.eval()
    try:
        attention, unknown = _attention_blocks(model)
        is_attention = bool(attention or unknown) or any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
        protected = (_residual_layers(model) + unknown) if is_attention else []
        if attention and not _head_pruning_runs(model, example, ratio, importance):
            kinds = sorted({type(block).__name__ for block in attention})
            log.warning("%s: the forward does not follow a smaller head count; heads kept, MLP channels pruned", ", ".join(kinds))
            protected += [lin for _attr, lins in attention.values() for lin in lins]
            attention = {}
        _prune_channels(model, example, ratio, importance, attention, protected)
        _prune_mha_heads(model, ratio, importance)
    except TrialError:
        raise
    except Exception as exc:
        raise TrialError(f"pruning at ratio {ratio} failed: {type(exc).__name__}: {exc}", structural="prune_ratio") from exc
    finally:
        model.train(was_training)
    after = count_params(model)
    try:
        with torch.no_grad():
            model.eval()
            model(example)
    except Exception as exc:
        raise TrialError(
            f"the model no longer runs after pruning at ratio {ratio}: {type(exc).__name__}: {exc}", structural="prune_ratio"
        ) from exc
    finally:
        model.train(was_training)
    heads_after = count_heads(model)
    log.debug("pruned %.2f: params %d -> %d, heads %d -> %d", ratio, before, after, heads_before, heads_after)
    return PruneReport(ratio, before, after, heads_before, heads_after)
