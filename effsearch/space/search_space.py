"""A study's search space: every dimension by name, what a trial suggests and the dense fp32 baseline."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from effsearch.space.catalog import CORE_PARAMS, default_dimensions
from effsearch.space.dimensions import Dimension

__all__ = ["SearchSpace", "default_space"]


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
