"""The validation after each epoch: the torch model's metric on the validation set (or a fixed part of it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Subset

from effsearch.inputs import call, to_device
from effsearch.outputs import Field, pick
from effsearch.samples import loader

__all__ = ["VALIDATION_SAMPLES", "torch_metric", "validation_part"]

# A validation set larger than this is validated, each epoch, on this many of its samples, evenly spaced:
# the same samples at every epoch and in every run, so that curves compare.
VALIDATION_SAMPLES = 1024


def validation_part(val_set: Any, limit: int = VALIDATION_SAMPLES) -> Any:
    """The validation set, or `limit` of its samples evenly spaced where it holds more."""
    n = len(val_set)
    if n <= limit:
        return val_set
    return Subset(val_set, [i * n // limit for i in range(limit)])


def torch_metric(
    model: torch.nn.Module, data: Any, metric: Callable[[Any, Any], float], device: torch.device, batch_size: int = 256,
    output: Field = None,
) -> float:
    """The metric over `data`'s outputs and targets concatenated, as the artifact's is (measure/metric.py).

    output: register(output=...), the field of the forward's result that is the output (outputs.pick).
    """
    was_training = model.training
    model.eval()
    outs, targets = [], []
    try:
        with torch.no_grad():
            for x, y in loader(data, batch_size=batch_size, shuffle=False):
                outs.append(pick(call(model, to_device(x, device)), output).float().cpu())
                targets.append(y)
    finally:
        model.train(was_training)
    return float(metric(torch.cat(outs), torch.cat(targets)))
