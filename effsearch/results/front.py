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
from effsearch.results.hypervolume import normalise
from effsearch.results.remeasured import pareto, with_remeasured, within_noise
from effsearch.results.speedup import dense_counterparts, speedup
from effsearch.space import CORE_PARAMS
from effsearch.storage import display_url

# The unit of each figure a trial records, for tables, plots and model cards.
UNITS = {
    "latency_ms": "ms",
    "latency_p90_ms": "ms",
    "flops": "FLOP",
    "param_count": "",
    "size_bytes": "B",
    "energy_j": "J",
    "infer_energy_mj": "mJ",
    "flops_per_j": "FLOP/J",
    "train_s": "s",
    "throughput_sps": "samples/s",
}

__all__ = [
    "UNITS",
    "StudyInfo",
    "FrontRow",
    "study_info",
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
    meta: dict[str, Any]


@dataclass(frozen=True)
class FrontRow:
    trial: int
    run: int
    params: dict[str, Any]
    metrics: dict[str, Any]
    onnx: str | None
    baseline: bool
    untrained: dict[str, Any] | None = None  # what was known before training (pretrain.Untrained)
    within_noise: tuple[int, ...] = ()  # front trials this one cannot be told apart from (re-measured)
    speedup_flag: str | None = None  # why its compression does not reach the artifact (results/speedup.py)

    @property
    def precision(self) -> str:
        return str(self.params.get("precision", "?"))


def study_info(study: optuna.Study) -> StudyInfo:
    meta = record.read_meta(study)
    objectives = tuple(study.metric_names or meta.get("objectives") or [f"objective_{i}" for i in range(len(study.directions))])
    return StudyInfo(
        name=study.study_name,
        metric_key=meta.get("metric_key", objectives[0]),
        metric_direction=meta.get("metric_direction", "maximize"),
        objectives=objectives,
        directions=tuple(d.name.lower() for d in study.directions),
        energy_source=meta.get("energy_source", "estimate"),
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
        trial=r.number, run=r.run, params=params, metrics=r.metrics, onnx=r.onnx, baseline=r.baseline, untrained=r.record.untrained
    )


def front_rows(study: optuna.Study) -> list[FrontRow]:
    """The Pareto-optimal complete trials, best metric first, from re-measured figures where they cover the front."""
    info = study_info(study)
    try:
        best = study.best_trials
    except (ValueError, RuntimeError):
        best = []
    recorded = {t.number: t for t in record.read_all(study, states=(TrialState.COMPLETE,))}
    entry = record.read_remeasured(study)
    timed = set((entry or {}).get("trials", {}))
    if entry and best and all(str(t.number) in timed for t in best):
        rows = [with_remeasured(row_of(recorded[int(n)]), entry) for n in timed if int(n) in recorded]
        base = next((r for r in rows if r.baseline), None)
        base_metric = float(base.metrics[info.metric_key]) if base is not None and info.metric_key in base.metrics else None
        limits = Constraints.from_dict(record.read_limits(study))
        front = pareto(rows, info.objectives, info.directions, limits, info.metric_key, base_metric, info.metric_direction)
        # A front point is within noise of any measured point it cannot be told apart from, on the front or not.
        peers = within_noise(rows, info.objectives, info.energy_source == "estimate")
        rows = [dataclasses.replace(r, within_noise=peers[r.trial]) for r in front]
    else:
        rows = [row_of(recorded[t.number]) for t in best]
    rows = _with_speedup(study, rows, recorded, entry)
    sign = -1.0 if info.metric_direction == "maximize" else 1.0
    return sorted(rows, key=lambda r: (sign * float(r.metrics.get(info.metric_key, 0.0)), r.trial))


def _with_speedup(study: optuna.Study, rows: list[FrontRow], recorded: dict[int, record.RecordedTrial],
                  entry: dict[str, Any] | None) -> list[FrontRow]:
    """Each row with its latency and FLOPs as ratios to the dense model at its precision, and its flag."""
    dense = dense_counterparts([with_remeasured(row_of(t), entry) for t in recorded.values()])
    leads = {t.number: t.record for t in record.read_all(study) if t.lead}
    out = []
    for r in rows:
        lead = leads.get(recorded[r.trial].run_trial if r.trial in recorded else r.trial)
        s = speedup(r, dense, lead.prune_round_to if lead is not None else None)
        out.append(r if s is None else dataclasses.replace(r, metrics={**r.metrics, **s.metrics()}, speedup_flag=s.flag))
    return out


def baseline(study: optuna.Study) -> FrontRow | None:
    """The dense fp32 baseline trial (the first run of the study), if it completed."""
    for t in record.read_all(study, states=(TrialState.COMPLETE,)):
        if t.baseline:
            return row_of(t)
    return None


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
    return "≥ " if key == "flops" and metrics.get("flops_complete") is False else ""


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
    return {
        "trial": row.trial, "run": row.run, "params": row.params, "metrics": metrics, "onnx": row.onnx,
        "untrained": row.untrained, "within_noise": list(row.within_noise), "speedup_flag": row.speedup_flag,
    }
