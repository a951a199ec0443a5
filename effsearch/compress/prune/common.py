"""What every pruner shares: the report, parameter counts, the output layer, importance and rounding."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from effsearch.errors import TrialError

log = logging.getLogger(__name__)


RECURRENT = (nn.LSTM, nn.GRU, nn.RNN)
CELLS = (nn.LSTMCell, nn.GRUCell, nn.RNNCell)
_PRUNABLE = (torch.nn.Linear, torch.nn.modules.conv._ConvNd, *RECURRENT)


@dataclass(frozen=True)
class PruneReport:
    """The asked ratio next to what pruning achieved on the parameter count (and on attention heads).

    kept: layers left whole although they are of a kind that is pruned elsewhere, by module name, with
    the reason and what would let them be pruned.
    """

    asked: float
    params_before: int
    params_after: int
    heads_before: int = 0
    heads_after: int = 0
    kept: dict[str, str] = field(default_factory=dict)

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
