"""The choices a dimension may offer, and the Dimension record: one searchable set of choices or range."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

__all__ = [
    "Dimension",
    "PRECISIONS",
    "EXTRA_PRECISIONS",
    "SCHEDULES",
    "OPTIMIZERS",
    "IMPORTANCES",
    "PRUNE_WHEN",
    "TRAIN_PRECISIONS",
    "DISTILL_WEIGHTS",
    "train_precisions",
]

PRECISIONS = ("fp32", "fp16", "int8_dynamic", "int8_static")
# Precisions a space may add to its choices (each a free trial of every run, like the defaults):
# int8_static_per_tensor is static int8 with one scale per weight tensor (compress/quantize.py).
EXTRA_PRECISIONS = ("int8_static_per_tensor",)
SCHEDULES = ("constant", "step", "cosine", "onecycle")
OPTIMIZERS = ("adamw", "sgd")
IMPORTANCES = ("l2", "l1", "bn_scale", "random")
PRUNE_WHEN = ("start", "finetune")
# Training precisions: fp32; bf16 autocast (CPU and GPU); fp16 autocast with a gradient scaler (GPU only).
TRAIN_PRECISIONS = ("fp32", "bf16", "fp16")
# Distillation weights searched for a model that arrives trained (0 = off): the weight of the teacher's
# soft targets against the task loss (train/levers.py).
DISTILL_WEIGHTS = (0.0, 0.25, 0.5, 0.75)


@dataclass(frozen=True)
class Dimension:
    """One search dimension: a set of choices or a numeric range, and the baseline's value."""

    name: str
    default: Any
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False

    @property
    def fixed(self) -> bool:
        if self.choices is not None:
            return len(self.choices) == 1
        return self.low == self.high

    def allows(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        return float(self.low) <= float(value) <= float(self.high)

    def distribution(self) -> BaseDistribution:
        if self.choices is not None:
            return CategoricalDistribution(self.choices)
        if self.integer:
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, self.choices)
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log, step=self.step)


def train_precisions(device: str) -> tuple[str, ...]:
    """The training precisions a device can run: fp16 needs CUDA's gradient scaler, so GPUs only."""
    return TRAIN_PRECISIONS if device == "cuda" else tuple(p for p in TRAIN_PRECISIONS if p != "fp16")
