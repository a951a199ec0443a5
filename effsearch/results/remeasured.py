"""The front from figures re-measured together (study/remeasure.py), and which points are within noise.

Where a re-measurement covers the stored front (it timed every trial of it), every figure effsearch shows
uses it (results/front.py: shown_rows): `latency_ms` becomes the re-measured median of each trial it timed,
`latency_first_ms` keeps the figure taken when the run ended. A re-measurement that misses a trial of the
stored front predates that trial, and is not used at all: mixing it with first figures would compare
moments again. Optuna's stored values keep the first figures (finished trials cannot change), so the
sampler, `study.best_trials` and optuna-dashboard can disagree with effsearch's front.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from effsearch.constraints import Constraints
from effsearch.figures import FIGURES, FLOPS, FLOPS_PER_J, INFER_ENERGY, LATENCY, LATENCY_P90, THROUGHPUT

__all__ = ["ESTIMATE_TOLERANCE", "EXACT", "in_force", "pareto", "within_noise", "with_remeasured"]

# Figures that do not vary from measurement to measurement: equal or not.
EXACT = tuple(k for k, f in FIGURES.items() if f.exact)
# Two estimates (energy without a meter) closer than this, relatively, cannot be told apart.
ESTIMATE_TOLERANCE = 0.10


def in_force(entry: dict[str, Any] | None, front: list[int]) -> dict[str, Any] | None:
    """The re-measurement where it timed every trial of the stored front `front` (trial numbers), else None."""
    timed = (entry or {}).get("trials", {})
    return entry if entry and front and all(str(n) in timed for n in front) else None


def with_remeasured(row: Any, entry: dict[str, Any] | None) -> Any:
    """The row with its latency re-measured, where the entry timed it; else the row as it is."""
    timed = (entry or {}).get("trials", {}).get(str(row.trial))
    if timed is None:
        return row
    metrics = {
        **row.metrics,
        "latency_first_ms": row.metrics.get(LATENCY.key),
        LATENCY.key: timed["p50_ms"],
        LATENCY_P90.key: timed["p90_ms"],
        "latency_interval_ms": [timed["lo_ms"], timed["hi_ms"]],
        "latency_ratio": timed["ratio"],
        "latency_ratio_interval": [timed["ratio_lo"], timed["ratio_hi"]],
        "remeasured_on": entry["host"],
    }
    if row.metrics.get(THROUGHPUT.key) and row.metrics.get(LATENCY.key):
        # Samples per second at the study's batch: the batch over the median call, re-measured with it.
        metrics[THROUGHPUT.key] = float(row.metrics[THROUGHPUT.key]) * float(row.metrics[LATENCY.key]) / timed["p50_ms"]
    if "energy_mj" in timed:  # read again with a hardware meter, in repeated windows
        metrics["infer_energy_first_mj"] = row.metrics.get(INFER_ENERGY.key)
        metrics[INFER_ENERGY.key] = timed["energy_mj"]
        metrics["infer_energy_interval_mj"] = [timed["energy_lo_mj"], timed["energy_hi_mj"]]
        if row.metrics.get(FLOPS.key) and timed["energy_mj"] > 0:
            metrics[FLOPS_PER_J.key] = float(row.metrics[FLOPS.key]) / (timed["energy_mj"] / 1e3)
    return dataclasses.replace(row, metrics=metrics)


def _values(row: Any, objectives: tuple[str, ...], directions: tuple[str, ...]) -> np.ndarray:
    sign = [-1.0 if d == "maximize" else 1.0 for d in directions]
    return np.array([s * float(row.metrics[k]) for s, k in zip(sign, objectives)])


def pareto(rows: list[Any], objectives: tuple[str, ...], directions: tuple[str, ...], limits: Constraints,
           metric_key: str, baseline_metric: float | None, direction: str) -> list[Any]:
    """The feasible rows no other feasible row dominates; a re-measured latency decides a latency limit."""
    feasible = [r for r in rows if all(c.met for c in limits.checks(r.metrics, metric_key, baseline_metric, direction))]
    vals = {r.trial: _values(r, objectives, directions) for r in feasible}
    return [
        r for r in feasible
        if not any(np.all(v <= vals[r.trial]) and np.any(v < vals[r.trial]) for n, v in vals.items() if n != r.trial)
    ]


def _close(key: str, a: dict[str, Any], b: dict[str, Any], estimate: bool) -> bool:
    figure = FIGURES.get(key)
    if figure is not None and figure.timed:  # throughput: the batch over the latency
        (alo, ahi), (blo, bhi) = a.get("latency_interval_ms") or (a[key], a[key]), b.get("latency_interval_ms") or (b[key], b[key])
        return alo <= bhi and blo <= ahi
    if key == INFER_ENERGY.key and a.get("infer_energy_interval_mj") and b.get("infer_energy_interval_mj"):
        (alo, ahi), (blo, bhi) = a["infer_energy_interval_mj"], b["infer_energy_interval_mj"]
        return alo <= bhi and blo <= ahi
    x, y = float(a[key]), float(b[key])
    if figure is not None and figure.energy and estimate:
        return abs(x - y) <= ESTIMATE_TOLERANCE * max(abs(x), abs(y), 1e-12)
    return x == y


def within_noise(rows: list[Any], objectives: tuple[str, ...], estimate: bool) -> dict[int, tuple[int, ...]]:
    """For each row, the other rows it cannot be told apart from: latency intervals that overlap, equal
    exact figures (the metric, size), estimates within ESTIMATE_TOLERANCE, on every objective."""
    keys = [*objectives, *(k for k in EXACT if k not in objectives)]

    def alike(a: dict[str, Any], b: dict[str, Any]) -> bool:
        shared = [k for k in keys if k in a or k in b]
        return all(k in a and k in b and _close(k, a, b, estimate) for k in shared)

    return {r.trial: tuple(o.trial for o in rows if o.trial != r.trial and alike(r.metrics, o.metrics)) for r in rows}
