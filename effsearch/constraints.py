"""Limits a user puts on a model: latency, metric drop from the dense baseline, file size.

One check serves `tune` (Optuna constraint values) and `export` (the best trial within limits).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from effsearch.figures import LATENCY, SIZE

__all__ = ["Check", "Constraints", "metric_drop"]


def metric_drop(metric: float, baseline: float, direction: str) -> float:
    """How much worse than the baseline, in the metric's own units (negative when better)."""
    return baseline - metric if direction == "maximize" else metric - baseline


@dataclass(frozen=True)
class Check:
    """One limit held against one trial's figure.

    what, unit: how the figure reads ("latency", "ms"); scale: what an excess is relative to.
    """

    key: str
    what: str
    unit: str
    value: float
    bound: float
    scale: float

    @property
    def violation(self) -> float:
        """How far past the bound (<= 0: met), in the figure's units; Optuna's constraint convention."""
        return self.value - self.bound

    @property
    def met(self) -> bool:
        return self.violation <= 0

    @property
    def relative(self) -> float:
        """The excess relative to the limit's scale (0 when met), to rank trials by how close they come."""
        return 0.0 if self.met else self.violation / max(abs(self.scale), 1e-12)

    def describe(self) -> str:
        return f"{self.what} {self.value:.4g}{' ' + self.unit if self.unit else ''}"


def _figure(metrics: dict[str, Any], key: str) -> float:
    # A figure that was not measured cannot meet a limit.
    value = metrics.get(key)
    return math.inf if value is None else float(value)


@dataclass(frozen=True)
class Constraints:
    max_latency_ms: float | None = None
    max_metric_drop: float | None = None
    max_size_mb: float | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in asdict(self).values())

    def to_dict(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Constraints:
        return cls(**{k: float(v) for k, v in (d or {}).items() if k in cls.__dataclass_fields__})

    def describe(self, metric_key: str = "metric") -> str:
        """The limits as a reader would say them, e.g. "latency <= 0.02 ms, size <= 0.1 MB"."""
        parts = []
        if self.max_latency_ms is not None:
            parts.append(f"latency <= {self.max_latency_ms:g} ms")
        if self.max_metric_drop is not None:
            parts.append(f"{metric_key} drop <= {self.max_metric_drop:g} from the baseline")
        if self.max_size_mb is not None:
            parts.append(f"size <= {self.max_size_mb:g} MB")
        return ", ".join(parts) or "no limits"

    def checks(self, metrics: dict[str, Any], metric_key: str, baseline: float | None, direction: str) -> list[Check]:
        """Every limit held against a trial's metrics, in to_dict() order.

        Without a baseline a metric drop cannot be judged: the limit counts as not met.
        """
        out = []
        if self.max_latency_ms is not None:
            latency = _figure(metrics, LATENCY.key)
            out.append(Check("max_latency_ms", "latency", LATENCY.unit, latency, self.max_latency_ms, self.max_latency_ms))
        if self.max_metric_drop is not None:
            metric = _figure(metrics, metric_key)
            drop = math.inf if baseline is None or not math.isfinite(metric) else metric_drop(metric, baseline, direction)
            out.append(Check("max_metric_drop", f"{metric_key} drop", "", drop, self.max_metric_drop, 1.0 if baseline is None else baseline))
        if self.max_size_mb is not None:
            out.append(Check("max_size_mb", "size", "MB", _figure(metrics, SIZE.key) / 1e6, self.max_size_mb, self.max_size_mb))
        return out

    def violations(self, metrics: dict[str, Any], metric_key: str, baseline: float | None, direction: str) -> list[float]:
        """One value per limit, <= 0 when met (Optuna's constraints_func convention)."""
        return [c.violation for c in self.checks(metrics, metric_key, baseline, direction)]
