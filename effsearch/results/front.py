"""The Pareto front and what is derived from it (knee, baseline, failures, the JSON rows), read from storage only."""

from __future__ import annotations

import dataclasses
import math
import shlex
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from effsearch import record
from effsearch.constraints import Constraints
from effsearch.figures import FIGURES, FLOPS
from effsearch.results.hypervolume import normalise
from effsearch.results.remeasured import in_force, pareto, with_remeasured, within_noise
from effsearch.results.speedup import dense_counterparts, speedup
from effsearch.space import CORE_PARAMS
from effsearch.storage import display_url

# The unit of each figure a trial records, for tables, plots and model cards.
UNITS = {k: f.unit for k, f in FIGURES.items()}

__all__ = [
    "UNITS",
    "StudyInfo",
    "FrontRow",
    "Shown",
    "shown",
    "study_info",
    "shown_rows",
    "front_rows",
    "knee",
    "failures",
    "baseline",
    "row_json",
    "row_of",
    "export_command",
    "at_least",
]


@dataclass(frozen=True)
class StudyInfo:
    """What the study recorded about itself."""

    name: str
    metric_key: str
    metric_direction: str
    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    energy_source: str
    meta: record.StudyMeta


@dataclass(frozen=True)
class FrontRow:
    trial: int
    run: int
    params: dict[str, Any]
    metrics: dict[str, Any]
    onnx: str | None
    baseline: bool
    untrained: dict[str, Any] | None = None  # what was known before training (run.untrained.Untrained)
    within_noise: tuple[int, ...] = ()  # front trials this one cannot be told apart from (re-measured)
    speedup_flag: str | None = None  # why its compression does not reach the artifact (results/speedup.py)
    prune_achieved: float | None = None  # the share of prunable channels the run removed (params: the share asked)

    @property
    def precision(self) -> str:
        return str(self.params.get("precision", "?"))

    @property
    def prune(self) -> float | None:
        """The pruning shown for the point: what was built, where the run recorded it, else what was asked."""
        if self.prune_achieved is not None:
            return float(self.prune_achieved)
        asked = self.params.get("prune_ratio")
        return None if asked is None else float(asked)


def study_info(study: optuna.Study) -> StudyInfo:
    meta = record.read_meta(study)
    objectives = meta.objectives
    return StudyInfo(
        name=study.study_name,
        metric_key=meta.metric.key,
        metric_direction=meta.metric.direction,
        objectives=objectives,
        directions=tuple(d.name.lower() for d in study.directions),
        energy_source=meta.energy.source,
        meta=meta,
    )


def row_of(t: FrozenTrial | record.RecordedTrial) -> FrontRow:
    """A trial as the front, the table and the JSON show it."""
    r = t if isinstance(t, record.RecordedTrial) else record.read(t)
    params = {k: r.params[k] for k in CORE_PARAMS if k in r.params}
    # The batch each run really trained with: the global batch rounded to a multiple of the world size.
    trained = r.config.get("batch_size")
    if trained is not None and "batch_size" in params:
        params["batch_size"] = int(trained)
    return FrontRow(
        trial=r.number, run=r.run, params=params, metrics=r.metrics, onnx=r.onnx, baseline=r.baseline, untrained=r.record.untrained,
        prune_achieved=r.record.prune_achieved,
    )


@dataclass(frozen=True)
class Shown:
    """Every completed trial as effsearch shows it (rows, by number), and where its figures come from.

    remeasured: the re-measurement in force (remeasured.in_force), or None; stored_front: the trials of
    Optuna's front (first figures); round_to: each trial's run's pruned-channel multiple (speedup flags).
    """

    rows: dict[int, FrontRow]
    remeasured: dict[str, Any] | None
    stored_front: tuple[int, ...]
    round_to: dict[int, int | None]


def _at_batch(untrained: dict[str, Any] | None, batch: int) -> dict[str, Any] | None:
    # Untrained figures are timed on the study's timed sample, at its latency batch, whatever their protocol says.
    if not untrained or not isinstance(untrained.get("protocol"), dict):
        return untrained
    return {**untrained, "protocol": {**untrained["protocol"], "batch": batch}}


def shown(study: optuna.Study) -> Shown:
    """Every completed trial with the figures effsearch shows for it: the one source of the front, the knee,
    the table, `pareto --json`, the report (points, hypervolume, parallel coordinates) and the model card.

    Latency (and inference energy a meter read again) re-measured together where the study's newest
    re-measurement covers its stored front, else as first measured; the pruning its run achieved
    (prune_achieved, on the run's lead trial); untrained figures at the batch the study times.
    """
    trials = record.read_all(study)
    leads = {t.number: t.record for t in trials if t.lead}
    try:
        best = tuple(t.number for t in study.best_trials)
    except (ValueError, RuntimeError):
        best = ()
    entry = in_force(record.read_remeasured(study), list(best))
    batch = record.read_meta(study).latency.batch
    rows, round_to = {}, {}
    for t in trials:
        if t.state != TrialState.COMPLETE:
            continue
        lead = leads.get(t.run_trial)
        row = row_of(t)
        row = dataclasses.replace(
            row, untrained=_at_batch(row.untrained, batch),
            prune_achieved=lead.prune_achieved if lead is not None else row.prune_achieved,
        )
        rows[t.number] = with_remeasured(row, entry)
        round_to[t.number] = lead.prune_round_to if lead is not None else None
    return Shown(rows, entry, best, round_to)


def shown_rows(study: optuna.Study) -> dict[int, FrontRow]:
    """Every completed trial by number, with the figures effsearch shows for it (see `shown`)."""
    return shown(study).rows


def front_rows(study: optuna.Study, seen: Shown | None = None) -> list[FrontRow]:
    """The Pareto-optimal complete trials, best metric first, from the figures shown (re-measured where in force).

    seen: `shown(study)`, where the caller has it already.
    """
    info = study_info(study)
    seen = shown(study) if seen is None else seen
    entry = seen.remeasured
    if entry is not None:
        rows = [seen.rows[int(n)] for n in entry["trials"] if int(n) in seen.rows]
        base = next((r for r in rows if r.baseline), None)
        base_metric = float(base.metrics[info.metric_key]) if base is not None and info.metric_key in base.metrics else None
        limits = Constraints.from_dict(record.read_limits(study))
        front = pareto(rows, info.objectives, info.directions, limits, info.metric_key, base_metric, info.metric_direction)
        # A front point is within noise of any measured point it cannot be told apart from, on the front or not.
        peers = within_noise(rows, info.objectives, info.energy_source == "estimate")
        rows = [dataclasses.replace(r, within_noise=peers[r.trial]) for r in front]
    else:
        rows = [seen.rows[n] for n in seen.stored_front if n in seen.rows]
    rows = _with_speedup(rows, seen)
    sign = -1.0 if info.metric_direction == "maximize" else 1.0
    return sorted(rows, key=lambda r: (sign * float(r.metrics.get(info.metric_key, 0.0)), r.trial))


def _with_speedup(rows: list[FrontRow], seen: Shown) -> list[FrontRow]:
    """Each row with its latency and FLOPs as ratios to the dense model at its precision, and its flag."""
    dense = dense_counterparts(list(seen.rows.values()))
    out = []
    for r in rows:
        s = speedup(r, dense, seen.round_to.get(r.trial))
        out.append(r if s is None else dataclasses.replace(r, metrics={**r.metrics, **s.metrics()}, speedup_flag=s.flag))
    return out


def baseline(study: optuna.Study, seen: Shown | None = None) -> FrontRow | None:
    """The dense fp32 baseline trial (the first run of the study) as shown, if it completed."""
    seen = shown(study) if seen is None else seen
    return next((r for r in seen.rows.values() if r.baseline), None)


def failures(study: optuna.Study) -> list[tuple[int, int, dict[str, Any], str]]:
    """(trial, run, params, reason) for every failed trial, and every running one whose worker is provably dead."""
    trials = record.read_all(study, states=(TrialState.FAIL, TrialState.RUNNING))
    return [(t.number, t.run, t.params, str(t.reason)) for t in trials if t.state == TrialState.FAIL or t.lost]


def knee(study: optuna.Study, rows: list[FrontRow] | None = None) -> FrontRow | None:
    """The front trial nearest the utopia point, in objective space normalised to [0, 1]."""
    rows = front_rows(study) if rows is None else rows
    if not rows:
        return None
    info = study_info(study)
    values = np.array([[float(r.metrics[k]) for k in info.objectives] for r in rows], dtype=float)
    scaled, _, _ = normalise(values, info.directions)  # over the front, as the hypervolume over all trials
    return rows[int(np.argmin(np.linalg.norm(scaled, axis=1)))]


def at_least(metrics: dict[str, Any], key: str) -> str:
    """"≥ " where the figure is a lower bound (FLOPs with an op counted as nothing that does work), else ""."""
    return "≥ " if key == FLOPS.key and metrics.get("flops_complete") is False else ""


def export_command(study_name: str, url: str, trial: int, out: str = "model.onnx") -> str:
    """The exact `effsearch export` command line that ships one trial."""
    return (
        f"effsearch export --study {shlex.quote(study_name)} --storage {shlex.quote(display_url(url))} "
        f"--trial {trial} -o {shlex.quote(out)}"
    )


def row_json(row: FrontRow) -> dict[str, Any]:
    """One element of `effsearch pareto --json` (PRODUCT.md)."""
    # JSON has no NaN or infinity: a non-finite figure (a metric that is not an objective) becomes null.
    metrics = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.metrics.items()}
    # params.prune_ratio: the pruning asked for (the searched value); prune_achieved: what was built.
    return {
        "trial": row.trial, "run": row.run, "params": row.params, "prune_achieved": row.prune_achieved, "metrics": metrics,
        "onnx": row.onnx, "untrained": row.untrained, "within_noise": list(row.within_noise), "speedup_flag": row.speedup_flag,
    }
