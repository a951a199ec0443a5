"""Structured pruning with torch-pruning's dependency graph; the output layer is never pruned.

Attention models (nn.MultiheadAttention, or a module holding q/k/v Linear layers and a head count) keep
their residual width: embeddings, LayerNorms and every layer writing the residual stream stay whole, and
pruning removes MLP hidden channels and whole attention heads, so num_heads shrinks and head_dim holds.

Recurrent layers (nn.LSTM, nn.GRU, nn.RNN; any number of layers, bidirectional, proj_size) lose hidden
units, the same number in every layer and direction (they share hidden_size), with the layers reading
their output following. torch-pruning 1.6 is not used for them: its LSTM pruner handles one layer only
and slices the wrong weight axes (the "IndexError: index out of range in self" seen at ratio 0.45), and
it has no GRU or RNN support. An embedding's vocabulary (num_embeddings) is never pruned. A layer that
cannot be pruned is kept whole, and the report says which and why (PruneReport.kept).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from effsearch.errors import TrialError
from effsearch.inputs import call
from effsearch.compress.prune.common import PruneReport, channel_multiple, count_params, output_layers
from effsearch.compress.prune.heads import attention_blocks, count_heads, prune_mha_heads, residual_layers
from effsearch.compress.prune.recurrent import prune_recurrent
from effsearch.compress.prune.channels import head_pruning_runs, prune_channels

__all__ = ["PruneReport", "prune", "output_layers", "count_params", "count_heads"]

log = logging.getLogger(__name__)


def prune(
    model: torch.nn.Module, example: Any, ratio: float, importance: str = "l2", *, multiple: int | None = None
) -> PruneReport:
    """Remove `ratio` of the channels of every prunable group, in place, keeping coupled layers consistent.

    Kept channel counts are rounded to `multiple` (common.kept_channels: the nearest multiple, never none
    pruned when some was asked); None: this host's channel_multiple(). A study passes the multiple it
    recorded when it was created, so every host of the study builds the same graph from the same ratio.
    In attention models `ratio` applies to MLP hidden channels and to the heads of each attention block,
    unrounded (their widths follow whole heads).
    A hand-written block whose forward does not follow its new head count (checked on a copy first)
    keeps its heads. Recurrent layers keep int(hidden_size * (1 - ratio)) units (checked on a copy
    first); those that cannot be pruned are named in the report's `kept`, with the reason.
    """
    before = count_params(model)
    heads_before = count_heads(model)
    if ratio <= 0.0:
        return PruneReport(ratio, before, before, heads_before, heads_before)
    was_training = model.training
    model.eval()
    try:
        attention, unknown = attention_blocks(model)
        is_attention = bool(attention or unknown) or any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
        protected = (residual_layers(model) + unknown) if is_attention else []
        if attention and not head_pruning_runs(model, example, ratio, importance):
            kinds = sorted({type(block).__name__ for block in attention})
            log.warning("%s: the forward does not follow a smaller head count; heads kept, MLP channels pruned", ", ".join(kinds))
            protected += [lin for _attr, lins in attention.values() for lin in lins]
            attention = {}
        kept = prune_recurrent(model, example, ratio, importance, output_layers(model, example) + protected)
        # Channel counts the runtime is fast at (not for attention, whose widths follow whole heads).
        multiple = 1 if is_attention else (channel_multiple() if multiple is None else multiple)
        prune_channels(model, example, ratio, importance, attention, protected, round_to=multiple)
        prune_mha_heads(model, ratio, importance)
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
            call(model, example)
    except Exception as exc:
        raise TrialError(
            f"the model no longer runs after pruning at ratio {ratio}: {type(exc).__name__}: {exc}", structural="prune_ratio"
        ) from exc
    finally:
        model.train(was_training)
    heads_after = count_heads(model)
    log.debug("pruned %.2f: params %d -> %d, heads %d -> %d", ratio, before, after, heads_before, heads_after)
    return PruneReport(ratio, before, after, heads_before, heads_after, kept, round_to=multiple)
