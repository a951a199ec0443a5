"""Know a configuration's cost before training it: its untrained figures, cached, and the screen of limits.

Every run is measured untrained first (pretrain.py), the figures cached on the study by what fixes the
shapes and the protocol, so a shape seen before costs nothing, for every worker and every later `tune`.
With a latency or size limit, a configuration none of whose precisions can meet every limit is screened
out untrained: recorded as PRUNED with its limit values, never trained, never on the front.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
from dataclasses import asdict, dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from effsearch import record
from effsearch.compress.prune.common import channel_multiple
from effsearch.constraints import Constraints
from effsearch.host import cpu_model
from effsearch.measure.artifact import Measurer
from effsearch.pretrain import PROTOCOL, measure_untrained
from effsearch.space import TrainConfig
from effsearch.userfile import UserFile

__all__ = ["LATENCY_MARGIN", "MAX_SCREENED_IN_ROW", "SIZE_MARGIN", "Screen", "Verdict"]

log = logging.getLogger(__name__)

# An untrained latency within this fraction above the limit (as a ratio to the baseline's) is within the
# measurement's noise: the configuration is trained and judged on its measured artifact.
LATENCY_MARGIN = 0.10
# An untrained file's size is its trained size within a few hundred bytes (identical initial tensors, such
# as BatchNorm statistics, are stored once): a size this close above the limit is trained and judged too.
SIZE_MARGIN = 0.01
# After this many suggestions in a row screened out, the limits are out of this model's reach.
MAX_SCREENED_IN_ROW = 50


@dataclass(frozen=True)
class Verdict:
    """Whether a configuration trains; if not, why, and each precision's limit values (Optuna's convention)."""

    reason: str | None
    violations: dict[str, dict[str, float]]
    excess: float  # how far the best precision lies outside the limits, relative to them (0 when it meets them)


@dataclass(frozen=True, kw_only=True)
class Screen:
    """The untrained figures of each configuration, and the verdict of the user's limits on them.

    on: False measures but never screens (to compare studies with and without screening).
    """

    study: optuna.Study
    uf: UserFile
    datasets: tuple[Any, Any]
    measurer: Measurer
    limits: Constraints
    on: bool = True

    @property
    def active(self) -> bool:
        """Screening is on whenever a limit that the untrained graph decides is given."""
        return self.on and (self.limits.max_latency_ms is not None or self.limits.max_size_mb is not None)

    def _key(self, config: TrainConfig) -> str:
        what = {
            "user_file": self.uf.sha256, "prune_ratio": config.prune_ratio, "prune_when": config.prune_when,
            "prune_importance": config.prune_importance, "threads": self.measurer.threads, "protocol": PROTOCOL,
            "host": socket.gethostname(), "cpu": cpu_model(), "channel_multiple": channel_multiple(),
        }
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:24]

    def figures(self, config: TrainConfig, precisions: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """Each precision's untrained figures, from the study's cache or measured now (and cached)."""
        key = self._key(config)
        cached = record.read_untrained(self.study, key)
        if all(p in cached for p in precisions):
            return {p: cached[p] for p in precisions}
        measured = measure_untrained(
            self.uf, self.datasets, config, precisions, calibration=self.measurer.calibration,
            sample=self.measurer.sample, threads=self.measurer.threads, providers=self.measurer.providers,
        )
        figures = {**cached, **{p: {**u.to_dict(), "protocol": PROTOCOL} for p, u in measured.items()}}
        record.write_untrained(self.study, key, figures)
        return {p: figures[p] for p in precisions if p in figures}

    def verdict(self, figures: dict[str, dict[str, Any]], baseline_latency_ms: float | None) -> Verdict:
        """Train unless no precision can meet every limit, by more than the measurement's noise.

        Untrained latency is judged as its ratio to the dense model times the dense baseline's measured
        latency (the untrained dense model's own, timed in the same window, until the baseline has run).
        """
        lat_limit, size_limit = self.limits.max_latency_ms, self.limits.max_size_mb
        violations, best, excess = {}, {}, []
        for precision, f in figures.items():
            anchor = baseline_latency_ms or f["latency_ms"] / f["latency_ratio"]
            latency, size = f["latency_ratio"] * anchor, f["size_bytes"] / 1e6
            best["latency"] = min(best.get("latency", latency), latency)
            best["size"] = min(best.get("size", size), size)
            values, over = {}, 0.0
            if lat_limit is not None:
                values["max_latency_ms"] = latency - lat_limit
                over += max(0.0, latency / (lat_limit * (1 + LATENCY_MARGIN)) - 1)
            if self.limits.max_metric_drop is not None:
                values["max_metric_drop"] = 0.0  # unknown before training: not a violation
            if size_limit is not None:
                values["max_size_mb"] = size - size_limit
                over += max(0.0, size / (size_limit * (1 + SIZE_MARGIN)) - 1)
            violations[precision] = {k: values[k] for k in self.limits.to_dict() if k in values}
            excess.append(over)
        if not figures or not self.active or min(excess) == 0.0:
            return Verdict(None, violations, 0.0)
        parts = []
        if lat_limit is not None and best["latency"] > lat_limit * (1 + LATENCY_MARGIN):
            parts.append(f"latency ≥ {best['latency']:.3g} ms > {lat_limit:g} ms")
        if size_limit is not None and best["size"] > size_limit * (1 + SIZE_MARGIN):
            parts.append(f"size ≥ {best['size']:.3g} MB > {size_limit:g} MB")
        what = "; ".join(parts) if parts else "no precision meets every limit at once"
        return Verdict(f"screened: {what} for every precision", violations, min(excess))

    def baseline_latency(self) -> float | None:
        """The dense baseline's measured fp32 latency, the anchor of untrained ratios."""
        for t in record.read_all(self.study, states=(TrialState.COMPLETE,)):
            if t.baseline and "latency_ms" in t.metrics:
                return float(t.metrics["latency_ms"])
        return None


def describe_config(config: TrainConfig) -> str:
    """A configuration as a reader names it, for messages."""
    c = asdict(config)
    return ", ".join(f"{k} {c[k]:g}" if isinstance(c[k], float) else f"{k} {c[k]}" for k in ("prune_ratio", "batch_size", "lr"))
