"""Channels of convolutions and Linear layers: torch-pruning's MetaPruner over the dependency graph."""

from __future__ import annotations

import copy
import logging
import warnings
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from effsearch.inputs import call
from effsearch.compress.prune.common import CELLS, RECURRENT, importance_of, kept_channels, output_layers
from effsearch.compress.prune.heads import WIDTH_ATTRS, attention_blocks, residual_layers
from effsearch.compress.prune.units import RecurrentPruner, recurrent_pruners, traced_whole, whole_layers

log = logging.getLogger(__name__)


class _MetaPruner(tp.pruner.MetaPruner):
    """torch-pruning's MetaPruner with effsearch's rounding of kept channel counts (common.kept_channels).

    Its own rounds the kept count down, to 0 where fewer than round_to channels are asked to stay, and a
    group that would lose every channel is then left whole: prune 0.75 of 32 channels at a multiple of 16
    built the dense model.
    """

    def _round_to(self, n_pruned: int, current_channels: int, round_to: int) -> int:
        return current_channels - kept_channels(current_channels, current_channels - n_pruned, round_to)


def prune_channels(
    model: nn.Module,
    example: Any,
    ratio: float,
    importance: str,
    attention: dict[nn.Module, tuple[str, list[nn.Linear]]],
    protected: list[nn.Module],
    round_to: int = 1,
) -> None:
    """torch-pruning's MetaPruner over the model; whole heads of `attention` blocks are removed.

    round_to: kept channel counts are rounded to a multiple of this (1: not rounded; see kept_channels).
    """
    num_heads = {lin: getattr(block, attr) for block, (attr, lins) in attention.items() for lin in lins}
    widths = {block: lins[0].out_features // (3 if len(lins) == 1 else 1) for block, (_a, lins) in attention.items()}
    # Recurrent layers were pruned (or kept) by prune_recurrent: here they and recurrent cells are traced as
    # one node each and only follow a layer before them that loses output channels (their input features).
    recurrent = [m for m in model.modules() if isinstance(m, (*RECURRENT, *CELLS))]
    with warnings.catch_warnings(), traced_whole(whole_layers(model)):
        # Bare nn.Parameters (position embeddings) are pruned along their last dimension, the residual
        # width: right for them, and in attention models that group is left whole anyway.
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        pruner = _MetaPruner(
            model,
            example,
            importance=importance_of(importance),
            pruning_ratio=ratio,
            ignored_layers=output_layers(model, example) + protected + recurrent,
            customized_pruners=recurrent_pruners(RecurrentPruner()),
            round_to=round_to if round_to > 1 else None,
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
        for name in WIDTH_ATTRS:
            if getattr(block, name, None) == widths[block]:
                setattr(block, name, lins[0].out_features // (3 if len(lins) == 1 else 1))


def head_pruning_runs(model: nn.Module, example: Any, ratio: float, importance: str) -> bool:
    """Prune a copy, heads included, and say whether it still runs (a forward may hard-code the width)."""
    probe = copy.deepcopy(model)
    state = torch.get_rng_state()  # random importance must pick alike in the probe and for real
    try:
        attention, unknown = attention_blocks(probe)
        prune_channels(probe, example, ratio, importance, attention, residual_layers(probe) + unknown)
        with torch.no_grad():
            call(probe, example)
        return True
    except Exception as exc:  # the probe's only question is whether it works
        log.debug("head-pruned copy failed: %s: %s", type(exc).__name__, exc)
        return False
    finally:
        torch.set_rng_state(state)
