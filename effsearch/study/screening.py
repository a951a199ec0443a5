"""Know a configuration's cost before training it: its untrained figures, cached, and the screen of limits.

Every run is measured untrained first (run/untrained.py), the figures cached on the study by the graph it
builds and the protocol, so a graph seen before costs a model build and a pruning, for every worker and
every later `tune`, whichever configuration built it. With a latency or size limit, a configuration none
of whose precisions can meet every limit is screened out untrained: recorded as PRUNED with its limit
values, never trained, never on the front.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import optuna

from effsearch import record
from effsearch.config import TrainConfig
from effsearch.constraints import Constraints
from effsearch.figures import LATENCY, SIZE
from effsearch.host import cpu_model
from effsearch.measure.artifact import Measurer
from effsearch.run.untrained import PROTOCOL, build_pruned, graph_key, measure_untrained
from effsearch.userfile import UserFile

__all__ = ["LATENCY_MARGIN", "MAX_SCREENED_IN_ROW", "SIZE_MARGIN", "Screen", "Streak", "Verdict"]

log = logging.getLogger(__name__)

# An untrained latency within this fraction above the limit is within the measurement's noise: the
# configuration is trained and judged on its measured artifact.
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
    # (prune ratio, importance) -> the key of the graph it builds, once per process.
    _graphs: dict[tuple[float, str], str] = field(default_factory=dict, init=False, repr=False, compare=False)

    @cached_property
    def channel_multiple(self) -> int | None:
        """The multiple the study rounds pruned channel counts to, recorded when it was created; None for a
        study made before it was (each host then rounds to its own channel_multiple())."""
        return record.read_meta(self.study).channel_multiple

    @property
    def active(self) -> bool:
        """Screening is on whenever a limit that the untrained graph decides is given."""
        return self.on and (self.limits.max_latency_ms is not None or self.limits.max_size_mb is not None)

    @property
    def protocol(self) -> dict[str, Any]:
        """How untrained figures are timed: the blocks' protocol at the study's latency batch."""
        return {**PROTOCOL, "batch": self.measurer.latency_batch}

    def _key(self, config: TrainConfig) -> str:
        """The cache's key: the graph the configuration builds (not the ratio asked), the file, the protocol, the host."""
        asked = (config.prune_ratio, config.prune_importance)
        if asked not in self._graphs:
            model, _ = build_pruned(self.uf, self.datasets[0], *asked, config.seed, self.channel_multiple)
            self._graphs[asked] = graph_key(model)
        what = {
            "user_file": self.uf.sha256, "graph": self._graphs[asked], "threads": self.measurer.threads,
            "protocol": self.protocol, "host": socket.gethostname(), "cpu": cpu_model(),
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
            multiple=self.channel_multiple,
        )
        protocol = self.protocol
        figures = {**cached, **{p: {**u.to_dict(), "protocol": protocol} for p, u in measured.items()}}
        record.write_untrained(self.study, key, figures)
        return {p: figures[p] for p in precisions if p in figures}

    def verdict(self, figures: dict[str, dict[str, Any]]) -> Verdict:
        """Train unless no precision can meet every limit, by more than the measurement's noise.

        Untrained latency is judged as its ratio to the untrained dense model times that dense model's
        latency, both from the one window they were timed in together: the dense baseline's once-only
        figure, taken at another moment, can be 2x off.
        """
        lat_limit, size_limit = self.limits.max_latency_ms, self.limits.max_size_mb
        violations, best, excess = {}, {}, []
        for precision, f in figures.items():
            # Figures cached before the dense model's own was kept: its p50 as the ratio implies it.
            anchor = f.get("dense_latency_ms") or f[LATENCY.key] / f["latency_ratio"]
            latency, size = f["latency_ratio"] * anchor, f[SIZE.key] / 1e6
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


def describe_config(config: TrainConfig) -> str:
    """A configuration as a reader names it, for messages."""
    c = asdict(config)
    return ", ".join(f"{k} {c[k]:g}" if isinstance(c[k], float) else f"{k} {c[k]}" for k in ("prune_ratio", "batch_size", "lr"))


class Streak:
    """Suggestions screened out in a row, and the closest of them: once MAX_SCREENED_IN_ROW were, the
    limits are out of this model's reach and the study ends, naming that closest configuration."""

    def __init__(self) -> None:
        self.in_row = 0
        self.closest: tuple[str, TrainConfig] | None = None  # (its verdict's reason, the configuration)
        self._closest_excess = float("inf")

    def screened(self, verdict: Verdict, config: TrainConfig) -> None:
        """One more configuration screened out."""
        self.in_row += 1
        if self.closest is None or verdict.excess < self._closest_excess:
            self.closest, self._closest_excess = (verdict.reason, config), verdict.excess

    def passed(self) -> None:
        """A configuration went on to train: the streak starts again."""
        self.in_row = 0

    def stop_reason(self, limits: Constraints, metric_key: str) -> str | None:
        """Why the study cannot go on: too many suggestions in a row screened out by the limits."""
        if self.in_row < MAX_SCREENED_IN_ROW:
            return None
        reason, config = self.closest or ("", None)
        return (
            f"{self.in_row} configurations in a row were screened out before training by "
            f"{limits.describe(metric_key)}; the closest ({describe_config(config)}) was {reason.removeprefix('screened: ')}; "
            "relax the limit or widen the search space (e.g. a higher prune_ratio)"
        )
