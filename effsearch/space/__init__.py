"""The search space: its dimensions and defaults (dimensions.py) and the TOML overrides (overrides.py)."""

from __future__ import annotations

from effsearch.space.dimensions import (
    CORE_PARAMS,
    IMPORTANCES,
    OPTIMIZERS,
    PRECISIONS,
    PRUNE_WHEN,
    SCHEDULES,
    Dimension,
    SearchSpace,
    TrainConfig,
    default_space,
)
from effsearch.space.overrides import load_space

__all__ = [
    "Dimension",
    "SearchSpace",
    "TrainConfig",
    "PRECISIONS",
    "SCHEDULES",
    "OPTIMIZERS",
    "IMPORTANCES",
    "PRUNE_WHEN",
    "CORE_PARAMS",
    "default_space",
    "load_space",
]
