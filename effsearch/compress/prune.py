"""Structured pruning with torch-pruning's dependency graph; the output layer is never pruned."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch_pruning as tp

from effsearch.errors import TrialError

__all__ = ["PruneReport", "prune", "output_layers", "count_params"]

log = logging.getLogger(__name__)

_PRUNABLE = (torch.nn.Linear, torch.nn.modules.conv._ConvNd)


@dataclass(frozen=True)
class PruneReport:
    """The asked ratio next to what pruning achieved on the parameter count."""

    asked: float
    params_before: int
    params_after: int

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


def prune(model: torch.nn.Module, example: torch.Tensor, ratio: float, importance: str = "l2") -> PruneReport:
    """Remove `ratio` of the channels of every prunable group, in place, keeping coupled layers consistent."""
    before = count_params(model)
    if ratio <= 0.0:
        return PruneReport(ratio, before, before)
    was_training = model.training
    model.eval()
    try:
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=_importance(importance),
            pruning_ratio=ratio,
            ignored_layers=output_layers(model, example),
            round_to=None,
        )
        pruner.step()
    except TrialError:
        raise
    except Exception as exc:
        raise TrialError(f"pruning at ratio {ratio} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        model.train(was_training)
    after = count_params(model)
    try:
        with torch.no_grad():
            model.eval()
            model(example)
    except Exception as exc:
        raise TrialError(f"the model no longer runs after pruning at ratio {ratio}: {type(exc).__name__}: {exc}") from exc
    finally:
        model.train(was_training)
    log.debug("pruned %.2f: params %d -> %d", ratio, before, after)
    return PruneReport(ratio, before, after)
