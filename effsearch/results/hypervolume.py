"""Exact hypervolume of a set of points (all objectives minimised), and its history over a study's trials.

Optuna's public API draws a hypervolume history but exposes no function that returns the numbers
(`optuna._hypervolume` is private), so the report computes them here. The objectives are first scaled to
[0, 1] between the best and the worst completed trial, each in its "smaller is better" form, so that
accuracy, milliseconds and joules weigh alike; the reference point is 1.1 in every scaled objective
(10% beyond the worst completed trial), which lets the worst trials still add volume.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["REFERENCE", "hypervolume", "nondominated", "normalise", "history"]

# The reference point, in every objective scaled to [0, 1] (0 = best completed, 1 = worst completed).
REFERENCE = 1.1


def nondominated(points: np.ndarray) -> np.ndarray:
    """The rows of `points` that no other row dominates (minimisation); duplicates kept once."""
    points = np.unique(np.asarray(points, dtype=float), axis=0)
    if len(points) <= 1:
        return points
    keep = np.ones(len(points), dtype=bool)
    for i, p in enumerate(points):
        others = points[keep]
        dominated = np.all(others <= p, axis=1) & np.any(others < p, axis=1)
        if dominated.any():
            keep[i] = False
    return points[keep]


def _hv2(points: np.ndarray, ref: np.ndarray) -> float:
    # A staircase: sweep by the first objective, adding the strip each new lower point opens.
    volume, best_y = 0.0, float(ref[1])
    for x, y in points[np.argsort(points[:, 0], kind="stable")]:
        if y < best_y:
            volume += (float(ref[0]) - x) * (best_y - y)
            best_y = y
    return float(volume)


def _hv(points: np.ndarray, ref: np.ndarray) -> float:
    d = points.shape[1]
    if d == 1:
        return float(ref[0] - points[:, 0].min())
    if d == 2:
        return _hv2(points, ref)
    # Slice along the last objective: each slab's volume is the (d-1)-volume of the points below it.
    points = points[np.argsort(points[:, -1], kind="stable")]
    volume = 0.0
    for i in range(len(points)):
        upper = points[i + 1, -1] if i + 1 < len(points) else ref[-1]
        depth = float(upper - points[i, -1])
        if depth > 0:
            volume += depth * _hv(nondominated(points[: i + 1, :-1]), ref[:-1])
    return volume


def hypervolume(points: np.ndarray | Sequence[Sequence[float]], reference: np.ndarray | Sequence[float]) -> float:
    """The volume dominated by `points` and bounded by `reference` (every objective minimised)."""
    ref = np.asarray(reference, dtype=float)
    pts = np.asarray(points, dtype=float).reshape(-1, len(ref))
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    return _hv(nondominated(pts), ref)


def normalise(values: np.ndarray, directions: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values turned into "smaller is better" and scaled to [0, 1] per objective; returns (scaled, lo, hi).

    lo and hi are in the minimised form (a maximised objective's are negated).
    """
    v = np.asarray(values, dtype=float).copy()
    for j, d in enumerate(directions):
        if d == "maximize":
            v[:, j] = -v[:, j]
    lo, hi = v.min(axis=0), v.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (v - lo) / span, lo, hi


def history(values: np.ndarray, directions: Sequence[str]) -> list[float]:
    """Hypervolume after each row of `values` (trials in order), in the scaled space with REFERENCE."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return []
    scaled, _, _ = normalise(values, directions)
    ref = np.full(scaled.shape[1], REFERENCE)
    out: list[float] = []
    front = np.empty((0, scaled.shape[1]))
    current = 0.0
    for p in scaled:
        # A point some front member already weakly dominates adds no volume; skip the recomputation.
        if len(front) and np.any(np.all(front <= p, axis=1)):
            out.append(current)
            continue
        front = nondominated(np.vstack([front, p]))
        current = float(hypervolume(front, ref))
        out.append(current)
    return out
