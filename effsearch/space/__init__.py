"""The search space: its dimensions and defaults (dimensions.py) and the TOML overrides (overrides.py)."""

from __future__ import annotations

from effsearch.space import dimensions as _dimensions
from effsearch.space.dimensions import *  # noqa: F403
from effsearch.space.overrides import load_space

__all__ = [*_dimensions.__all__, "load_space"]
