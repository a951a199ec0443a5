"""The search space: the catalog of dimensions (catalog.py), their ranges (dimensions.py) and rules in a
space file (rules.py), a study's space (search_space.py) and the TOML overrides (overrides.py)."""

from __future__ import annotations

from effsearch.space import dimensions as _dimensions
from effsearch.space.catalog import CATALOG, CORE_PARAMS, DimensionSpec, config_of
from effsearch.space.dimensions import *  # noqa: F403
from effsearch.space.overrides import load_space
from effsearch.space.rules import Rule
from effsearch.space.search_space import SearchSpace, default_space

__all__ = [
    *_dimensions.__all__,
    "CATALOG",
    "CORE_PARAMS",
    "DimensionSpec",
    "Rule",
    "SearchSpace",
    "config_of",
    "default_space",
    "load_space",
]
