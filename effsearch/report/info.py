"""Everything the study report shows, read from storage only into the records of report/data.py (the HTML draws them)."""

from __future__ import annotations

import logging
import warnings
from itertools import combinations

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from effsearch import record
from effsearch.constraints import metric_drop
from effsearch.figures import ENERGY, FIGURES
from effsearch.report.data import Curve, FrontEntry, Hypervolume, Importance, ParallelDim, Point, Report
from effsearch.results import hypervolume as hv
from effsearch.results.front import (
    Shown, StudyInfo, baseline, export_command, failures, front_rows, knee, row_of, shown, study_info,
)
from effsearch.space import CORE_PARAMS
from effsearch.storage import display_url

__all__ = [
    "MIN_IMPORTANCE_RUNS",
    "Curve",
    "Point",
    "FrontEntry",
    "Hypervolume",
    "Importance",
    "ParallelDim",
    "Report",
    "build_report",
    "energy_source",
    "metric_label",
]

log = logging.getLogger(__name__)

# fANOVA on fewer training runs than this says more about noise than about the parameters (the trials
# of one run share every parameter but the precision).
MIN_IMPORTANCE_RUNS = 5


def energy_source(info: StudyInfo, key: str) -> str | None:
    """Where an energy figure's numbers come from: training's meter, or the one inference energy was read with."""
    # Inference energy may come from another meter than training's (recorded on the study).
    inference = FIGURES[key].energy == "inference"
    return info.meta.energy.infer_source if inference else info.energy_source


def metric_label(info: StudyInfo, key: str) -> str:
    """A column or axis title with its unit; energy says where its numbers come from."""
    figure = FIGURES.get(key)
    label = key if figure is None else figure.label
    if figure is not None and figure.energy:
        source = energy_source(info, key)
        label += " (estimate)" if source == "estimate" else f" ({source or 'not measured'})"
    return label


def _values(seen: Shown, number: int, info: StudyInfo, stored: tuple[float, ...] | None) -> dict[str, float]:
    """A completed trial's objectives as shown; Optuna's stored value where none is shown (a trial that
    completed after `seen` was read)."""
    metrics = seen.rows[number].metrics if number in seen.rows else {}
    return {k: float(v if metrics.get(k) is None else metrics[k]) for k, v in zip(info.objectives, stored or ())}


def _points(study: optuna.Study, info: StudyInfo, seen: Shown, front: set[int], knee_trial: int | None) -> list[Point]:
    points = []
    for t in record.read_all(study, states=(TrialState.COMPLETE, TrialState.FAIL)):
        params = {k: t.params[k] for k in CORE_PARAMS if k in t.params}
        common = dict(trial=t.number, run=t.run, baseline=t.baseline, knee=t.number == knee_trial, params=params)
        if t.state == TrialState.FAIL:
            values = {k: float(t.metrics[k]) for k in info.objectives if k in t.metrics} or None
            asked = params.get("prune_ratio")
            points.append(Point(state="failed", values=values, reason=t.reason, prune=None if asked is None else float(asked), **common))
            continue
        row = seen.rows.get(t.number) or row_of(t)
        state = "front" if t.number in front else ("infeasible" if t.infeasible else "dominated")
        points.append(Point(state=state, values=_values(seen, t.number, info, t.values), prune=row.prune, **common))
    return points


def _curves(study: optuna.Study) -> list[Curve]:
    """Every run's curve, in run order (studies begun before curves were recorded have none)."""
    out = []
    for t in sorted((t for t in record.read_all(study) if t.lead and t.curve), key=lambda t: t.run):
        pts = t.curve
        out.append(Curve(
            t.number, t.run, tuple(int(p["epoch"]) for p in pts), tuple(float(p["metric"]) for p in pts),
            tuple(p.get(ENERGY.key) for p in pts), t.record.stopped,
        ))
    return out


def _hypervolume(study: optuna.Study, info: StudyInfo, seen: Shown) -> Hypervolume:
    """Over the completed trials within the search constraints, from their figures as shown."""
    trials = [t for t in record.read_all(study, states=(TrialState.COMPLETE,)) if not t.infeasible]
    trials.sort(key=lambda t: t.number)
    note = None
    if len(trials) < 2:
        note = f"the hypervolume needs at least 2 completed trials to mean anything; this study has {len(trials)}"
    if not trials:
        return Hypervolume((), (), hv.REFERENCE, (), (), note)
    values = np.array([list(_values(seen, t.number, info, t.values).values()) for t in trials], dtype=float)
    _, lo, hi = hv.normalise(values, info.directions)
    series = hv.history(values, info.directions)
    return Hypervolume(
        tuple(t.number for t in trials), tuple(series), hv.REFERENCE, tuple(map(float, lo)), tuple(map(float, hi)), note
    )


def _varying(trials: list[FrozenTrial]) -> list[str]:
    names = []
    for k in CORE_PARAMS:
        if all(k in t.params for t in trials) and len({repr(t.params[k]) for t in trials}) > 1:
            names.append(k)
    return names


def _importances(study: optuna.Study, info: StudyInfo, seen: Shown) -> list[Importance]:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    runs = len({record.read(t).run_trial for t in trials})
    if runs < MIN_IMPORTANCE_RUNS:
        note = (
            f"parameter importance needs completed trials from at least {MIN_IMPORTANCE_RUNS} training runs; "
            f"this study has {runs}"
        )
        return [Importance(k, None, note) for k in info.objectives]
    params = _varying(trials)
    if not params:
        return [Importance(k, None, "no searched parameter varies across the completed trials") for k in info.objectives]
    out = []
    for key in info.objectives:  # the objectives as shown (re-measured where in force)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imp = optuna.importance.get_param_importances(
                    study,
                    evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                    params=params,
                    target=lambda t, key=key: _values(seen, t.number, info, tuple(t.values))[key],
                )
            out.append(Importance(key, {k: float(v) for k, v in imp.items()}, None))
        except (RuntimeError, ValueError, ZeroDivisionError) as exc:
            log.debug("importance of %s failed: %s", key, exc)
            out.append(Importance(key, None, f"parameter importance for {key} could not be computed: {exc}"))
    return out


def _parallel(study: optuna.Study, info: StudyInfo, seen: Shown) -> tuple[list[ParallelDim], list[int]]:
    """The searched values (prune_ratio as asked) against the objectives as shown."""
    trials = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    if not trials:
        return [], []
    space = info.meta.space
    dims = []
    for k in CORE_PARAMS:
        if not all(k in t.params for t in trials):
            continue
        vals = [t.params[k] for t in trials]
        if isinstance(vals[0], str):
            cats = [str(c) for c in space.get(k, {}).get("choices", [])]
            cats += sorted({str(v) for v in vals} - set(cats))
            dims.append(ParallelDim(k, tuple(float(cats.index(str(v))) for v in vals), tuple(cats)))
        elif k == "lr":
            dims.append(ParallelDim(k, tuple(float(np.log10(v)) for v in vals), log=True))
        else:
            dims.append(ParallelDim(k, tuple(float(v) for v in vals)))
    shown_values = [_values(seen, t.number, info, tuple(t.values)) for t in trials]
    for key in info.objectives:
        dims.append(ParallelDim(key, tuple(v[key] for v in shown_values)))
    return dims, [t.number for t in trials]


def build_report(study: optuna.Study, url: str) -> Report:
    """Read the whole report of one study. Never fails on a small or all-failed study: it adds notes."""
    info = study_info(study)
    seen = shown(study)  # every figure the report shows comes from here
    rows = front_rows(study, seen)
    k = knee(study, rows)
    base = baseline(study, seen)
    front_set = {r.trial for r in rows}
    points = _points(study, info, seen, front_set, k.trial if k else None)
    notes = []
    n_complete = sum(p.state != "failed" for p in points)
    if not points:
        notes.append("the study has no finished trial yet; run `effsearch tune FILE` to add some")
    elif n_complete == 0:
        notes.append("every trial failed; see the failures below")
    if base is None:
        notes.append("the dense baseline did not complete, so metric drops cannot be shown and the drop control is off")
    if len(info.objectives) > 2 and rows:
        notes.append(
            f"the front is Pareto-optimal in all {len(info.objectives)} objectives; in a two-objective view some front "
            "trials can look dominated"
        )
    entry = seen.remeasured
    if entry and rows and any("latency_first_ms" in r.metrics for r in rows):
        notes.append(
            f"the front's latencies were re-measured together on {entry['host']} ({len(entry['trials'])} artifacts, "
            "interleaved blocks); Optuna's stored values keep the figures taken when each run ended, so the sampler, "
            "study.best_trials and optuna-dashboard can disagree with this front"
        )
    for what, why in record.read_given_up(study).items():
        notes.append(f"{what} is no longer searched for this model: {why}")
    kept = {(layer, why) for t in record.read_all(study) if t.lead for layer, why in (t.record.prune_kept or {}).items()}
    for layer, why in sorted(kept):
        notes.append(f"pruning kept {layer} whole: {why}")
    key = info.metric_key
    entries = []
    for r in rows:
        drop = None
        if base is not None and key in r.metrics and key in base.metrics:
            drop = metric_drop(float(r.metrics[key]), float(base.metrics[key]), info.metric_direction)
        entries.append(FrontEntry(r, drop, k is not None and r.trial == k.trial, export_command(info.name, url, r.trial)))
    hyper = _hypervolume(study, info, seen)
    importances = _importances(study, info, seen)
    dims, par_trials = _parallel(study, info, seen)
    if not dims:
        notes.append("parallel coordinates need at least one completed trial")
    return Report(
        info=info,
        storage=display_url(url),
        points=tuple(points),
        pairs=tuple(combinations(info.objectives, 2)),
        front=tuple(entries),
        baseline=base,
        failed=tuple(failures(study)),
        hypervolume=hyper,
        importances=tuple(importances),
        parallel=tuple(dims),
        parallel_trials=tuple(par_trials),
        notes=tuple(notes),
        curves=tuple(_curves(study)),
    )
