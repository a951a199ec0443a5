"""A model's output as effsearch reads it: one tensor, taken from what forward returns.

A forward may return a tensor, or a Hugging Face `ModelOutput`, a dict or a tuple holding tensors. The
loss, the metric, the export and latency all read one tensor: the field `register(output=...)` names,
else the field named `logits`, else the first tensor that is not `loss` (which Hugging Face models return
first when given labels). `pick` is the one place that choice is made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from effsearch.errors import TrialError

__all__ = ["DEFAULT_FIELD", "Field", "Picked", "describe", "field_of", "pick", "picked"]

DEFAULT_FIELD = "logits"
# A field of a dict-like output (its key) or of a tuple (its index); None: the default rule.
Field = str | int | None


def describe(raw: Any) -> str:
    """What a forward returned, in words: its type and, for a dict or tuple, its tensor fields."""
    if isinstance(raw, torch.Tensor):
        return f"a tensor of shape {tuple(raw.shape)}"
    if isinstance(raw, Mapping):
        return f"{type(raw).__name__} with fields {[k for k, v in raw.items() if isinstance(v, torch.Tensor)]}"
    if isinstance(raw, (tuple, list)):
        return f"a {type(raw).__name__} of {len(raw)}"
    return type(raw).__name__


def field_of(raw: Any, field: Field = None) -> Field:
    """The field of `raw` that pick takes (None for a bare tensor); TrialError where there is none."""
    if isinstance(raw, torch.Tensor):
        return None
    if isinstance(raw, Mapping):
        if field is not None:
            if field not in raw or not isinstance(raw[field], torch.Tensor):
                raise TrialError(f"the model's output has no tensor field {field!r}: it is {describe(raw)}; name one of them in register(output=...)")
            return field
        if isinstance(raw.get(DEFAULT_FIELD), torch.Tensor):
            return DEFAULT_FIELD
        found = next((k for k, v in raw.items() if k != "loss" and isinstance(v, torch.Tensor)), None)
    elif isinstance(raw, (tuple, list)):
        if field is not None:
            if not isinstance(field, int) or not -len(raw) <= field < len(raw) or not isinstance(raw[field], torch.Tensor):
                raise TrialError(f"the model returns {describe(raw)}: register(output={field!r}) must be the index of a tensor in it")
            return field
        found = next((i for i, v in enumerate(raw) if isinstance(v, torch.Tensor)), None)
    else:
        found = None
    if found is None:
        raise TrialError(f"the model must return a tensor, or a ModelOutput, dict or tuple holding one; got {describe(raw)}")
    return found


def pick(raw: Any, field: Field = None) -> torch.Tensor:
    """The one tensor of a forward's result that the loss, metric, export and latency read."""
    at = field_of(raw, field)
    return raw if at is None else raw[at]


class Picked(nn.Module):
    """`module` whose forward returns the picked tensor of its result: what is exported and counted."""

    def __init__(self, module: nn.Module, field: Field = None) -> None:
        super().__init__()
        self.module = module
        self.field = field

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return pick(self.module(*args, **kwargs), self.field)


def picked(module: nn.Module, field: Field) -> nn.Module:
    """`module` itself where the default rule applies, else a Picked of it that carries `field` along."""
    return module if field is None else Picked(module, field)
