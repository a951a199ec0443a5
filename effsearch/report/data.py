"""The study report as plain frozen records: what report/info.py reads from storage and the HTML draws."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from effsearch.results.front import FrontRow, StudyInfo

__all__ = ["Curve", "FrontEntry", "Hypervolume", "Importance", "ParallelDim", "Point", "Report"]


@dataclass(frozen=True)
class Point:
    """One trial as the plots see it. state: front, dominated, infeasible (broke a search constraint) or failed.

    values: the objectives as shown (results/front.py: shown); prune: the pruning built (asked, where the
    run recorded none or failed before building); params: the searched values, prune_ratio as asked.
    """

    trial: int
    run: int
    state: str
    baseline: bool
    knee: bool
    params: dict[str, Any]
    values: dict[str, float] | None
    reason: str | None = None
    prune: float | None = None


@dataclass(frozen=True)
class FrontEntry:
    """A row of the front table: the trial, its drop from the baseline, and the command that ships it."""

    row: FrontRow
    drop: float | None
    knee: bool
    command: str


@dataclass(frozen=True)
class Hypervolume:
    """Hypervolume after each completed trial, from the figures shown (results/front.py: shown), in the
    scaled objective space (see results/hypervolume.py).

    lo, hi: each objective's best and worst completed value, in its minimised form (maximised ones negated).
    """

    trials: tuple[int, ...]
    values: tuple[float, ...]
    reference: float
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    note: str | None


@dataclass(frozen=True)
class Curve:
    """One run's validation after each epoch; stopped: why the run was stopped early, or None."""

    trial: int
    run: int
    epochs: tuple[int, ...]
    metric: tuple[float, ...]
    energy_j: tuple[float | None, ...]
    stopped: str | None = None


@dataclass(frozen=True)
class Importance:
    """fANOVA importance of each searched parameter for one objective, or why there is none."""

    objective: str
    importances: dict[str, float] | None
    note: str | None


@dataclass(frozen=True)
class ParallelDim:
    """One axis of the parallel-coordinates plot; categories name the integer codes of a categorical axis."""

    name: str
    values: tuple[float, ...]
    categories: tuple[str, ...] | None = None
    log: bool = False


@dataclass(frozen=True)
class Report:
    info: StudyInfo
    storage: str
    points: tuple[Point, ...]
    pairs: tuple[tuple[str, str], ...]
    front: tuple[FrontEntry, ...]
    baseline: FrontRow | None
    failed: tuple[tuple[int, int, dict[str, Any], str], ...]
    hypervolume: Hypervolume
    importances: tuple[Importance, ...]
    parallel: tuple[ParallelDim, ...]
    parallel_trials: tuple[int, ...]
    notes: tuple[str, ...]
    curves: tuple[Curve, ...] = ()

    @property
    def complete(self) -> int:
        return sum(p.state != "failed" for p in self.points)
