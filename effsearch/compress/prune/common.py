"""What every pruner shares: the report, parameter counts, the output layer, importance and rounding."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from effsearch.errors import TrialError
from effsearch.inputs import call

log = logging.getLogger(__name__)


RECURRENT = (nn.LSTM, nn.GRU, nn.RNN)
CELLS = (nn.LSTMCell, nn.GRUCell, nn.RNNCell)
_PRUNABLE = (torch.nn.Linear, torch.nn.modules.conv._ConvNd, *RECURRENT)


@dataclass(frozen=True)
class PruneReport:
    """The asked ratio next to what pruning built: parameter counts (and attention heads) before and after.

    kept: layers left whole although they are of a kind that is pruned elsewhere, by module name, with
    the reason and what would let them be pruned.
    """

    asked: float
    params_before: int
    params_after: int
    heads_before: int = 0
    heads_after: int = 0
    kept: dict[str, str] = field(default_factory=dict)
    round_to: int | None = None  # channel counts were rounded to a multiple of this

    @property
    def achieved(self) -> float:
        """The pruning built: the fraction of the model's parameters removed (0.0 when nothing was).

        Counted on the pruned model, so it says what rounding, layers kept whole and the output layer
        left of the asked ratio; coupled layers lose in- and out-channels, so halving channels removes
        about three quarters of a convolution's weights.
        """
        return 1.0 - self.params_after / self.params_before if self.params_before else 0.0


# Where a CPU's instruction set cannot be read, or to turn rounding off (1).
CHANNEL_MULTIPLE_ENV = "EFFSEARCH_CHANNEL_MULTIPLE"


def channel_multiple() -> int:
    """The multiple pruned channel counts are rounded to: what onnxruntime's CPU convolution kernels block
    channels by here (16 with AVX-512, 8 with AVX2 and others), or EFFSEARCH_CHANNEL_MULTIPLE.

    A study records the creating host's figure and prunes with it on every host (prune's `multiple`):
    hosts of one study whose CPUs differ would otherwise build different graphs from one prune ratio.

    Measured on a 2-core AVX2 machine, untrained MobileNet-style model at 3x32x32, latency as a ratio to
    dense: prune 0.25 -> 0.83x unrounded, 0.66x rounded to 8 (0.75x to 4, 0.72x to 16); prune 0.5 -> 0.47x,
    0.44x (0.46x, 0.56x); prune 0.75 -> 0.32x, 0.35x (0.31x, 0.34x). Odd counts such as 35 or 13 fall off
    the blocked kernels: a trained model pruned 0.45 that way ran 1.04x slower than dense.
    """
    import os

    raw = os.environ.get(CHANNEL_MULTIPLE_ENV)
    if raw:
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise TrialError(f"{CHANNEL_MULTIPLE_ENV}={raw!r} is not a whole number >= 1; set e.g. 8, or 1 for no rounding")
        return value
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return 8
    return 16 if " avx512f" in flags else 8


def kept_channels(total: int, asked: int, multiple: int) -> int:
    """How many of a group's `total` channels are kept when `asked` were asked for, rounded to `multiple`.

    The nearest multiple, but never `total` (a ratio that asks for pruning always prunes) and never 0:
    between `multiple` and the largest multiple below `total`. A group with no multiple below its
    size (total <= multiple) keeps `asked`, unrounded: rounding could only leave it whole.
    """
    if multiple <= 1 or asked >= total or total <= multiple:
        return asked
    nearest = math.floor(asked / multiple + 0.5) * multiple
    return min(max(nearest, multiple), (total - 1) // multiple * multiple)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def output_layers(model: torch.nn.Module, example: Any) -> list[torch.nn.Module]:
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
            call(model, example)
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return last[-1:]


def importance_of(name: str) -> tp.importance.Importance:
    if name == "l2":
        return tp.importance.GroupMagnitudeImportance(p=2)
    if name == "l1":
        return tp.importance.GroupMagnitudeImportance(p=1)
    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    if name == "random":
        return tp.importance.RandomImportance()
    raise TrialError(f"unknown pruning importance {name!r}; use l2, l1, bn_scale or random")


def keep_count(total: int, ratio: float) -> int:
    # The rounding torch-pruning uses for channels and heads, never below one.
    return max(1, int(total * (1.0 - ratio)))
