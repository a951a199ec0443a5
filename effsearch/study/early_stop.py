"""The early-stopping rule of one run, built from the study: the completed runs' curves and pre-training figures.

The rule itself (when a run stops) is train/stopping.py; here are the references it compares against,
read from the study when the run starts (runs that complete while it trains on another worker join the
next run's references).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import optuna
from optuna.trial import TrialState

from effsearch import record
from effsearch.figures import ENERGY
from effsearch.train.stopping import CATCH_UP, FIRST_STOP_EPOCH, PRE_TRAINING, STOP_MARGIN, Point, StopRule, pre_training_value

__all__ = ["stop_rule"]


def _compared(untrained: dict[str, Any], figures: tuple[str, ...]) -> tuple[float, ...] | None:
    """A precision's pre-training figures in `figures`' order; None where recorded before this protocol."""
    try:
        return tuple(pre_training_value(k, untrained) for k in figures)
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def _finite(value: Any) -> float:
    """A recorded figure as a float; NaN where it is missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _references(
    study: optuna.Study, figures: tuple[str, ...], epochs: int, metric_key: str, maximize: bool
) -> dict[int, tuple[Point, ...]]:
    """Per epoch, one point per feasible finished precision of every run that completed its `epochs`.

    A precision's curve is the run's torch curve shifted by that precision's final metric (measured on its
    artifact) minus the torch metric of the last epoch: what its artifact lost against the torch model
    (an int8 quantization's cost), it loses at every epoch. A precision without a finite final metric
    is no reference.
    """
    every = record.read_all(study)
    leads = {t.number: t for t in every if t.lead}
    points: dict[int, list[Point]] = defaultdict(list)
    for t in every:
        if t.state != TrialState.COMPLETE or t.infeasible or t.reference or not t.record.untrained:
            continue
        lead = leads.get(t.run_trial)
        if lead is None or lead.stopped or len(lead.curve) != epochs or lead.config.get("epochs") != epochs:
            continue
        own = _compared(t.record.untrained, figures)
        last = float(lead.curve[-1]["metric"])
        final = _finite(t.metrics.get(metric_key))
        if own is None or not math.isfinite(final - last):
            continue
        for p in lead.curve:
            metric = float(p["metric"])
            gain = max(0.0, last - metric if maximize else metric - last)
            points[int(p["epoch"])].append(Point(lead.run, metric + final - last, p.get(ENERGY.key), own, gain))
    return {k: tuple(v) for k, v in points.items()}


def stop_rule(
    study: optuna.Study,
    *,
    objectives: tuple[str, ...],
    metric_key: str,
    maximize: bool,
    untrained: dict[str, dict[str, Any]],
    epochs: int,
    margin: float = STOP_MARGIN,
    catch_up: float = CATCH_UP,
    first_epoch: int = FIRST_STOP_EPOCH,
) -> StopRule | None:
    """The rule for a run whose precisions measured `untrained` before training; None where it cannot stop.

    None when a precision's pre-training figures are missing (the run trains in full) or there is no
    completed run to compare with yet.
    """
    figures = tuple(k for k in objectives if k in PRE_TRAINING)
    own = tuple(_compared(u, figures) for u in untrained.values())
    if not own or None in own:
        return None
    references = _references(study, figures, epochs, metric_key, maximize)
    if not references:
        return None
    return StopRule(
        metric_key, maximize, figures, own, references, energy=ENERGY.key in objectives, epochs=epochs,
        margin=margin, catch_up=catch_up, first_epoch=first_epoch,
    )
