"""The search dimensions, their defaults, and a trial's frozen configuration."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import optuna

from effsearch.train.loaders import LoaderOptions
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution


__all__ = [
    "Dimension",
    "SearchSpace",
    "TrainConfig",
    "PRECISIONS",
    "EXTRA_PRECISIONS",
    "SCHEDULES",
    "OPTIMIZERS",
    "IMPORTANCES",
    "PRUNE_WHEN",
    "TRAIN_PRECISIONS",
    "DISTILL_WEIGHTS",
    "CORE_PARAMS",
    "train_precisions",
    "default_space",
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
# The dimensions every trial records in its params (PRODUCT.md's JSON), searched or fixed.
CORE_PARAMS = ("batch_size", "lr", "lr_schedule", "clip_norm", "prune_ratio", "precision", "world_size")


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


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs to know, fixed before it starts."""

    batch_size: int
    lr: float
    lr_schedule: str
    clip_norm: float
    prune_ratio: float
    world_size: int
    epochs: int
    seed: int
    optimizer: str = "adamw"
    warmup_frac: float = 0.05
    prune_importance: str = "l2"
    prune_when: str = "start"
    finetune_frac: float = 0.34
    train_precision: str = "fp32"
    distill: float = 0.0
    distill_temperature: float = 4.0
    loader: LoaderOptions = field(default_factory=LoaderOptions)  # chosen per run (train/loaders.py)


# Fine-tuning a model that arrives trained: a learning rate ten times lower and a short warm-up, so that
# a dense fine-tuned run keeps the reference's accuracy (README: "A model that arrives trained").
FINETUNE_LR = Dimension("lr", 3e-4, low=3e-5, high=3e-3, log=True)
FINETUNE_WARMUP = Dimension("warmup_frac", 0.02, low=0.02, high=0.02)


def train_precisions(device: str) -> tuple[str, ...]:
    """The training precisions a device can run: fp16 needs CUDA's gradient scaler, so GPUs only."""
    return TRAIN_PRECISIONS if device == "cuda" else tuple(p for p in TRAIN_PRECISIONS if p != "fp16")


def default_dimensions(max_world_size: int, trained: bool = False, device: str = "cpu") -> dict[str, Dimension]:
    """The built-in dimensions; trained: fine-tuning defaults for a model that arrives trained (and
    distillation from it); device: "cpu" or "cuda", whose training precisions are searched."""
    dims = [
        Dimension("batch_size", 64, choices=(16, 32, 64, 128)),
        FINETUNE_LR if trained else Dimension("lr", 3e-3, low=3e-4, high=3e-2, log=True),
        Dimension("lr_schedule", "cosine", choices=SCHEDULES),
        Dimension("clip_norm", 0.0, choices=(0.0, 1.0, 5.0)),
        Dimension("prune_ratio", 0.0, low=0.0, high=0.75, step=0.05),
        Dimension("precision", "fp32", choices=PRECISIONS),
        Dimension("world_size", 1, low=1, high=max_world_size, integer=True),
        Dimension("optimizer", "adamw", choices=("adamw",)),
        FINETUNE_WARMUP if trained else Dimension("warmup_frac", 0.05, low=0.05, high=0.05),
        Dimension("prune_importance", "l2", choices=("l2",)),
        Dimension("prune_when", "start", choices=("start",)),
        Dimension("train_precision", "fp32", choices=train_precisions(device)),
        Dimension("distill", 0.0, choices=DISTILL_WEIGHTS if trained else (0.0,)),
        Dimension("distill_temperature", 4.0, low=4.0, high=4.0),
    ]
    return {d.name: d for d in dims}


@dataclass(frozen=True)
class SearchSpace:
    """All dimensions of a study, by name."""

    dims: dict[str, Dimension] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Dimension:
        return self.dims[name]

    @property
    def precisions(self) -> tuple[str, ...]:
        d = self.dims["precision"]
        return tuple(d.choices) if d.choices is not None else (d.default,)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggest the core dimensions always (so every trial records them) and the others when searched."""
        params = {}
        for name, dim in self.dims.items():
            if name in CORE_PARAMS or not dim.fixed:
                params[name] = dim.suggest(trial)
            else:
                params[name] = dim.default
        return params

    def baseline(self) -> dict[str, Any]:
        """The dense fp32 baseline: every dimension at its default, no pruning.

        Where the space leaves out no pruning or fp32, the baseline takes the dimension's default instead.
        """
        base = {name: dim.default for name, dim in self.dims.items()}
        for name, value in (("prune_ratio", 0.0), ("precision", "fp32")):
            if self.dims[name].allows(value):
                base[name] = value
        return base

    def distributions(self) -> dict[str, BaseDistribution]:
        return {name: dim.distribution() for name, dim in self.dims.items() if name in CORE_PARAMS or not dim.fixed}

    def fixed(self, name: str, value: Any) -> SearchSpace:
        """This space with one dimension fixed to `value`."""
        d = self.dims[name]
        if d.choices is not None:
            new = replace(d, choices=(value,), default=value)
        else:
            new = replace(d, low=value, high=value, default=value, step=None, log=False)
        return SearchSpace({**self.dims, name: new})

    def clamp_world_size(self, max_world_size: int) -> SearchSpace:
        d = self.dims["world_size"]
        high = min(int(d.high), max_world_size)
        low = min(int(d.low), high)
        new = replace(d, low=low, high=high, default=min(int(d.default), high))
        return SearchSpace({**self.dims, "world_size": new})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, d in self.dims.items():
            entry: dict[str, Any] = {"default": d.default}
            if d.choices is not None:
                entry["choices"] = list(d.choices)
            else:
                entry.update(low=d.low, high=d.high, log=d.log, step=d.step)
            out[name] = entry
        return out


def default_space(max_world_size: int = 1, trained: bool = False, device: str = "cpu") -> SearchSpace:
    return SearchSpace(default_dimensions(max_world_size, trained, device))


# -- TOML overrides -------------------------------------------------------------------------------
