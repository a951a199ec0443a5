"""The values a dimension may take in a space file, and how a value is written back in TOML."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Rule", "one_of", "shown"]


def shown(v: Any) -> str:
    """v as it would be written in TOML, on one line."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
        return f"{v:.1f}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(shown(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {shown(x)}" for k, x in v.items()) + "}"
    return str(v)


@dataclass(frozen=True)
class Rule:
    """The values one dimension takes: names, or whole numbers or numbers within bounds."""

    kind: type  # str, int or float
    names: tuple[str, ...] = ()
    minimum: float = -math.inf
    positive: bool = False  # the minimum itself is not allowed
    below: float | None = None  # values must be below this
    example: Any = None

    @property
    def what(self) -> str:
        if self.kind is str:
            return "one of " + ", ".join(shown(n) for n in self.names)
        noun = "a whole number" if self.kind is int else "a number"
        if self.below is not None:
            return f"{noun} in [{self.minimum:g}, {self.below:g})"
        if self.minimum > -math.inf:
            return f"{noun} {'>' if self.positive else '>='} {self.minimum:g}"
        return noun

    def problem(self, v: Any) -> str | None:
        """Why v is not a value of this rule (e.g. "is not a number"), or None when it is."""
        if self.kind is str:
            return None if isinstance(v, str) and v in self.names else f"is not {self.what}"
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return "is not a number"
        if not math.isfinite(v):
            return "is not a finite number"
        if self.kind is int and not float(v).is_integer():
            return "is not a whole number"
        if v < self.minimum or (self.positive and v == self.minimum) or (self.below is not None and v >= self.below):
            return f"is not {self.what}"
        return None

    def cast(self, v: Any) -> Any:
        return v if self.kind is str else self.kind(v)


def one_of(names: tuple[str, ...]) -> Rule:
    """The rule of a dimension whose values are names."""
    return Rule(str, names=names, example=names[0])
