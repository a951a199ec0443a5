"""The catalog of search dimensions: one entry per dimension, read by the defaults, the space file's rules,
the report's labels and a run's TrainConfig.

Adding a dimension is one entry here and, for a training knob, TrainConfig's field of the same name
(effsearch/config.py); config_of fills every field a dimension names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from effsearch.config import TrainConfig
from effsearch.space.dimensions import DISTILL_WEIGHTS, EXTRA_PRECISIONS, IMPORTANCES, OPTIMIZERS, PRECISIONS, PRUNE_WHEN
from effsearch.space.dimensions import SCHEDULES, TRAIN_PRECISIONS, Dimension, train_precisions
from effsearch.space.rules import Rule, one_of

__all__ = ["CATALOG", "CORE_PARAMS", "DimensionSpec", "config_of", "default_dimensions"]


@dataclass(frozen=True)
class DimensionSpec:
    """One dimension of the catalog: its built-in range, the rule its values follow in a space file, its label.

    built_in: the range for a model trained here; trained: the range for a model that arrives trained,
    where it differs; on_machine(dimension, max_world_size, device): the range narrowed to the machine.
    core: recorded on every trial, searched or fixed (PRODUCT.md's JSON).
    """

    built_in: Dimension
    rule: Rule
    label: str  # the report's axis and bar title
    core: bool = False
    trained: Dimension | None = None
    on_machine: Callable[[Dimension, int, str], Dimension] | None = None

    @property
    def name(self) -> str:
        return self.built_in.name

    def dimension(self, max_world_size: int, trained: bool, device: str) -> Dimension:
        """The built-in range of a study on this machine, for a model trained here or arriving trained."""
        d = self.trained if trained and self.trained is not None else self.built_in
        return d if self.on_machine is None else self.on_machine(d, max_world_size, device)


def _up_to_ranks(d: Dimension, max_world_size: int, device: str) -> Dimension:
    return replace(d, high=max_world_size)


def _device_can_train(d: Dimension, max_world_size: int, device: str) -> Dimension:
    return replace(d, choices=train_precisions(device))


def _catalog(*specs: DimensionSpec) -> dict[str, DimensionSpec]:
    return {s.name: s for s in specs}


CATALOG: dict[str, DimensionSpec] = _catalog(
    DimensionSpec(Dimension("batch_size", 64, choices=(16, 32, 64, 128)), Rule(int, minimum=1, example=64), "batch", core=True),
    DimensionSpec(
        Dimension("lr", 3e-3, low=3e-4, high=3e-2, log=True), Rule(float, minimum=0.0, positive=True, example=0.003), "lr", core=True,
        # Fine-tuning a model that arrives trained: a learning rate ten times lower (and a short warm-up,
        # below), so that a dense fine-tuned run keeps the reference's accuracy (docs/results.md: "A model that
        # arrives trained").
        trained=Dimension("lr", 3e-4, low=3e-5, high=3e-3, log=True),
    ),
    DimensionSpec(Dimension("lr_schedule", "cosine", choices=SCHEDULES), one_of(SCHEDULES), "schedule", core=True),
    DimensionSpec(Dimension("clip_norm", 0.0, choices=(0.0, 1.0, 5.0)), Rule(float, minimum=0.0, example=1.0), "clip", core=True),
    # prune_ratio, as searched, is the share asked for; what was built is shown as "prune (built)".
    DimensionSpec(Dimension("prune_ratio", 0.0, low=0.0, high=0.75, step=0.05), Rule(float, minimum=0.0, below=1.0, example=0.5),
                  "prune (asked)", core=True),
    DimensionSpec(Dimension("precision", "fp32", choices=PRECISIONS), one_of(PRECISIONS + EXTRA_PRECISIONS), "precision", core=True),
    DimensionSpec(Dimension("world_size", 1, low=1, high=1, integer=True), Rule(int, minimum=1, example=1), "ranks", core=True,
                  on_machine=_up_to_ranks),
    DimensionSpec(Dimension("optimizer", "adamw", choices=("adamw",)), one_of(OPTIMIZERS), "optimizer"),
    DimensionSpec(Dimension("warmup_frac", 0.05, low=0.05, high=0.05), Rule(float, minimum=0.0, below=1.0, example=0.05), "warmup_frac",
                  trained=Dimension("warmup_frac", 0.02, low=0.02, high=0.02)),
    DimensionSpec(Dimension("prune_importance", "l2", choices=("l2",)), one_of(IMPORTANCES), "prune_importance"),
    DimensionSpec(Dimension("prune_when", "start", choices=("start",)), one_of(PRUNE_WHEN), "prune_when"),
    DimensionSpec(Dimension("train_precision", "fp32", choices=train_precisions("cpu")), one_of(TRAIN_PRECISIONS), "train_precision",
                  on_machine=_device_can_train),
    DimensionSpec(Dimension("distill", 0.0, choices=(0.0,)), Rule(float, minimum=0.0, below=1.0, example=0.5), "distill",
                  trained=Dimension("distill", 0.0, choices=DISTILL_WEIGHTS)),
    DimensionSpec(Dimension("distill_temperature", 4.0, low=4.0, high=4.0), Rule(float, minimum=0.0, positive=True, example=4.0),
                  "distill_temperature"),
)
# The dimensions every trial records in its params (PRODUCT.md's JSON), searched or fixed.
CORE_PARAMS = tuple(name for name, spec in CATALOG.items() if spec.core)
# The dimensions a training run is told (TrainConfig's fields); the others, precision, act after training.
_TRAINED = {f.name for f in fields(TrainConfig)} & set(CATALOG)


def default_dimensions(max_world_size: int, trained: bool = False, device: str = "cpu") -> dict[str, Dimension]:
    """The built-in dimensions; trained: fine-tuning defaults for a model that arrives trained (and
    distillation from it); device: "cpu" or "cuda", whose training precisions are searched."""
    return {name: spec.dimension(max_world_size, trained, device) for name, spec in CATALOG.items()}


def config_of(params: dict[str, Any], *, epochs: int, seed: int) -> TrainConfig:
    """The training run a trial's parameters stand for; the global batch becomes a multiple of the world size.

    A parameter missing from a trial leaves its field's default: studies begun before a training knob
    existed (the training precision, distillation) trained with it.
    """
    given = {name: CATALOG[name].rule.kind(params[name]) for name in _TRAINED if name in params}
    world, batch = given["world_size"], given["batch_size"]
    given["batch_size"] = max(world, (batch // world) * world)
    return TrainConfig(**given, epochs=epochs, seed=seed)
