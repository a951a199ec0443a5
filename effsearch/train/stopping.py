"""Multi-objective early stopping: a run stops once none of its points can still reach the front.

A configuration's latency, size and FLOPs are fixed by its pruned graph before it trains (run/untrained.py),
so at the end of each epoch only the metric and the energy spent so far are open. A run is stopped at
epoch k when every one of its precision points (metric at k, that precision's pre-training figures,
energy spent up to k) is dominated, by a margin on the metric, by a point of a run that completed: that
precision's metric and the energy at the same epoch k, its own pre-training figures. A completed run's
precision is credited with its own curve: the torch curve shifted by that precision's final metric minus
the torch metric of the last epoch (an int8 artifact that lost a point loses it at every epoch). The
margin includes what the run itself may still gain: its gain over its last epoch times the epochs left,
so a run still climbing fast enough to close the gap is not stopped behind one that started faster.
Pre-training figures are compared with pre-training figures (latency as the ratio to the untrained
dense model, which is what the cache keeps comparable across measuring windows).

The rule is plain data, built by the driver from the study (study/early_stop.py) and applied in the ranks
after each epoch, so a stopped run frees its ranks without a round trip.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

from effsearch.figures import ENERGY, FIGURES, LATENCY, LATENCY_P90

__all__ = ["CATCH_UP", "FIRST_STOP_EPOCH", "PRE_TRAINING", "STOP_MARGIN", "Point", "StopRule", "pre_training_value", "unstoppable"]

# A reference point dominates on the metric only when it is better by more than the largest of:
# - this fraction of its own value (accuracy 0.90 -> 0.018);
# - CATCH_UP times what the reference itself still gained from that epoch to its last: early in training,
#   when every run is far from where it ends, a lead means little. On the digits benchmark, without this
#   term, runs 0.014 behind at 0.24 after one epoch were stopped and would have ended on the front;
# - the run's own gain over its last epoch times the epochs it has left (StopRule.check): a slow starter
#   still climbing fast enough to close the gap goes on. The two terms above stay: one epoch's gain is a
#   noisy, schedule-bound estimate (a step or one-cycle schedule changes the slope later), and the
#   reference's remaining gain is evidence from a run that finished.
STOP_MARGIN = 0.02
CATCH_UP = 0.25
# The first epoch after which a run may be stopped. The margin, not a grace period, guards against an
# early lead that does not last; the first epoch's own gain counts from the model the run started
# training (validated before its first epoch, loop.py), so a run that does not learn at all is still
# stopped after one epoch (docs/measurement.md, "Stopping a run early").
FIRST_STOP_EPOCH = 1
# The objectives fixed before training, with the untrained figure each is compared on (all minimised).
PRE_TRAINING = tuple(k for k, f in FIGURES.items() if f.untrained)


def pre_training_value(key: str, untrained: Mapping[str, Any]) -> float:
    """The untrained figure an objective is compared on: latency as its ratio to the untrained dense model."""
    if key == LATENCY.key:
        return float(untrained["latency_ratio"])
    if key == LATENCY_P90.key:
        # The p90 over the dense model's p50, from the same window as the ratio of the p50s.
        return float(untrained[LATENCY_P90.key]) / float(untrained[LATENCY.key]) * float(untrained["latency_ratio"])
    return float(untrained[key])


def unstoppable(objectives: tuple[str, ...], metric_key: str) -> str | None:
    """Why no run of a study with these objectives can be stopped early, or None when one can."""
    other = [k for k in objectives if k != metric_key and k != ENERGY.key and k not in PRE_TRAINING]
    if metric_key not in objectives:
        return f"early stopping is off: the metric {metric_key!r} is not an objective"
    if other:
        return (
            f"early stopping is off: objective {other[0]!r} is neither the metric, the training energy, "
            "nor a figure known before training"
        )
    return None


@dataclass(frozen=True)
class Point:
    """One precision of a completed run at one epoch: its metric, energy so far, and pre-training figures.

    metric: the torch curve's metric at this epoch, shifted to this precision (see the module's docstring).
    gain: how much better the run's metric still became from this epoch to its last (0 where it did not).
    """

    run: int
    metric: float
    energy_j: float | None
    figures: tuple[float, ...]
    gain: float = 0.0


@dataclass(frozen=True)
class StopRule:
    """When a run is stopped (see the module's docstring).

    figures: the pre-training objectives compared, in this order in every Point (all minimised).
    own: this run's pre-training figures, one tuple per precision it makes.
    references: per epoch (from 1), the points of the completed runs' precisions at that epoch.
    energy: whether the training energy is an objective (then a reference must have spent no more).
    epochs: the run's epochs (the epochs it has left bound what it may still gain).
    """

    metric_key: str
    maximize: bool
    figures: tuple[str, ...]
    own: tuple[tuple[float, ...], ...]
    references: Mapping[int, tuple[Point, ...]]
    _: KW_ONLY
    epochs: int
    energy: bool = True
    margin: float = STOP_MARGIN
    catch_up: float = CATCH_UP
    first_epoch: int = FIRST_STOP_EPOCH

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"StopRule.epochs = {self.epochs}: pass the run's epochs (1 or more)")

    def _reach(self, epoch: int, metric: float, previous: float) -> float:
        """How much better the run may still become: its gain over its last epoch, kept up to its last.

        Unknown (a non-finite previous metric) counts as unbounded; a run that got worse may gain nothing.
        """
        if not math.isfinite(metric):
            return 0.0
        if not math.isfinite(previous):
            return math.inf
        gain = metric - previous if self.maximize else previous - metric
        return max(0.0, gain) * (self.epochs - epoch)

    def _margin(self, ref: Point, reach: float) -> float:
        return max(self.margin * abs(ref.metric), self.catch_up * ref.gain, reach)

    def _better(self, ref: Point, metric: float, reach: float) -> bool:
        """Whether `ref` beats `metric` by more than the margin (a non-finite metric is beaten by any)."""
        if not math.isfinite(metric):
            return math.isfinite(ref.metric)
        gap = ref.metric - metric if self.maximize else metric - ref.metric
        return gap > self._margin(ref, reach)

    def _dominates(self, ref: Point, metric: float, reach: float, energy_j: float | None, figures: tuple[float, ...]) -> bool:
        if not self._better(ref, metric, reach):
            return False
        if self.energy and (energy_j is None or ref.energy_j is None or ref.energy_j > energy_j):
            return False
        return all(r <= f for r, f in zip(ref.figures, figures))

    def check(self, epoch: int, metric: float, energy_j: float | None, *, previous: float) -> str | None:
        """Why the run stops after `epoch` (from 1), or None while one of its points may reach the front.

        previous: the run's metric one epoch earlier (before its first epoch: the model it started
        training, validated), from which its own gain over the last epoch is taken.
        """
        # After its last epoch a run is complete: its artifact is measured and judged on the front.
        if epoch < self.first_epoch or not self.own or epoch >= self.epochs:
            return None
        refs = self.references.get(epoch, ())
        reach = self._reach(epoch, metric, previous)
        by: list[Point] = []
        for figures in self.own:
            dominant = next((r for r in refs if self._dominates(r, metric, reach, energy_j, figures)), None)
            if dominant is None:
                return None
            by.append(dominant)
        best = max(by, key=lambda r: r.metric if self.maximize else -r.metric)
        also = " and training energy" if self.energy else ""
        return (
            f"stopped after epoch {epoch} of {self.epochs}: every precision point is dominated by a completed run's at the "
            f"same epoch (run {best.run}: {self.metric_key} {best.metric:.4g} vs {metric:.4g}, margin {self._margin(best, reach):.3g}, "
            f"with pre-training figures{also} no worse; at its last epoch's gain the {self.epochs - epoch} epochs left add {reach:.3g})"
        )
