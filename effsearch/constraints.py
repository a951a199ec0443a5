"""Limits a user puts on a model: latency, metric drop from the dense baseline, file size."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Constraints", "metric_drop"]


def metric_drop(metric: float, baseline: float, direction: str) -> float:
    """How much worse than the baseline, in the metric's own units (negative when better)."""
    return baseline - metric if direction == "maximize" else metric - baseline


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

    def violations(self, metrics: dict[str, Any], metric_key: str, baseline: float | None, direction: str) -> list[float]:
        """One value per constraint, <= 0 when met (Optuna's constraints_func convention)."""
        out = []
        if self.max_latency_ms is not None:
            out.append(float(metrics["latency_ms"]) - self.max_latency_ms)
        if self.max_metric_drop is not None:
            # Without a baseline the drop cannot be judged: count the limit as not met.
            drop = math.inf if baseline is None else metric_drop(float(metrics[metric_key]), baseline, direction)
            out.append(drop - self.max_metric_drop)
        if self.max_size_mb is not None:
            out.append(float(metrics["size_bytes"]) / 1e6 - self.max_size_mb)
        return out
