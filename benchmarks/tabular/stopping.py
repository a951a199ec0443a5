"""Stopping rules replayed on the table's learning curves, budget in epochs, as whole systems.

Each arm is a search and a stopping rule together, fed by the table (make_mnist1d_table.py): a run
trains its configuration's recorded curve epoch by epoch, the rule may stop it after any epoch, and the
budget counts the epochs trained, stopped runs' included. A completed run adds all its precision points
to the hypervolume (the replay's scaled objectives, as a fraction of the true front's); a stopped run
adds none. The arms:

- effsearch: the default sampler (`make_sampler`) and effsearch's own rule (`stop_rule`, imported, never
  copied), fed a study recorded as effsearch records one: each run's lead trial with its curve, config
  and untrained figures, its other precisions as free trials, a stopped run PRUNED with its reason;
- none: the same sampler, no stopping;
- moasha: Syne Tune's MOASHA scheduler class, its config_space a `choice` over the grid's values,
  `time_attr` the epoch, the metric negated (it minimises every metric), deciding on the run's torch curve,
  its fp32 untrained latency ratio and its training energy so far; numpy's global generator seeded
  per seed (its `suggest` draws from it);
- on one random configuration stream (drawn from numpy's generator seeded per seed): effsearch's rule,
  MOASHA's rule and no rule, so the rule is compared apart from the sampler.

The curve holds the metric after each epoch, not before the first: where effsearch's rule asks for the
metric before epoch 1 (its own gain over the first epoch), the replay gives it chance level, 1 / classes
(MNIST-1D's ten balanced classes: 0.1), which is what an untrained classifier scores.
"""

from __future__ import annotations

import csv
import datetime
import json
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from effsearch import record
from effsearch.results.hypervolume import hypervolume
from effsearch.sampler import make_sampler
from effsearch.study.early_stop import stop_rule

from replay import BASELINE, DIMS, DIRECTIONS, PRECISIONS, Table, _value, load_table, quiet_worker

OBJECTIVES = ("accuracy", "latency_ms", "energy_j")  # the replay's objectives, as the study names them
CHANCE = 0.1  # the metric before the first epoch (see the module's docstring)
RUNS = 60  # the no-stopping arm's runs; the budget is half its epochs
HALF = 0.5
REDUCTION_FACTOR = 3  # MOASHA's default halving rate
ARMS = ("effsearch", "none", "moasha", "stream-effsearch", "stream-moasha", "stream-none")


@dataclass(frozen=True)
class Curves:
    """The table and, per configuration, its curve and each precision's untrained figures."""

    table: Table
    curve: dict[tuple[Any, ...], list[dict[str, float]]]  # epoch points: epoch, metric, energy_j (so far)
    untrained: dict[tuple[Any, ...], dict[str, dict[str, float]]]  # precision -> latency_ratio, size_bytes
    epochs: int


def load_curves(path: Path) -> Curves:
    table = load_table(path)
    curve: dict[tuple[Any, ...], list[dict[str, float]]] = {}
    untrained: dict[tuple[Any, ...], dict[str, dict[str, float]]] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            key = tuple(_value(d, r[d]) for d in DIMS)
            untrained.setdefault(key, {})[r["precision"]] = {
                "latency_ratio": float(r["untrained_latency_ratio"]), "size_bytes": float(r["untrained_size_bytes"]),
            }
            if r["curve"]:
                curve[key] = json.loads(r["curve"])
    lengths = {len(c) for c in curve.values()}
    if len(lengths) != 1 or set(curve) != set(table.points):
        raise SystemExit(f"{path}: every configuration needs one curve of the same length ({sorted(lengths)} found)")
    return Curves(table, curve, untrained, lengths.pop())


@dataclass
class Trace:
    """One system's run: after each completed run, the epochs spent so far and the hypervolume fraction."""

    epochs: list[int]
    hv: list[float]
    runs: int = 0
    stopped: int = 0
    stopped_after: list[int] = field(default_factory=list)  # the epoch after which each stopped run stopped
    front_stopped: int = 0  # stopped runs of a configuration with a point on the table's true front

    def at(self, budget: float) -> float:
        """The hypervolume of the runs completed within `budget` epochs."""
        return max((h for e, h in zip(self.epochs, self.hv) if e <= budget), default=0.0)


class Front:
    """The points found so far, scored against the true front."""

    def __init__(self, table: Table):
        self.table = table
        front, self.ref, self.true_hv = table.scoring()
        self.found: list[np.ndarray] = []
        self.on_true_front = {c for c, by in table.points.items()
                              if any((front == p).all(axis=1).any() for p in by.values())}

    def add(self, config: tuple[Any, ...]) -> float:
        self.found.extend(self.table.points[config][p] for p in PRECISIONS)
        return hypervolume(np.array(self.found), self.ref) / self.true_hv


# -- the rules: each decides after every epoch of a run whether it stops --------------------------


class EffsearchRule:
    """effsearch's rule, built from a study recorded as effsearch records one, before each run."""

    def __init__(self, curves: Curves, study: optuna.Study):
        self.c, self.study = curves, study

    def start(self, trial_id: int, config: tuple[Any, ...], baseline: bool):
        if baseline:  # effsearch never stops the baseline
            return None
        return stop_rule(self.study, objectives=OBJECTIVES, metric_key=OBJECTIVES[0], maximize=True,
                         untrained=self.c.untrained[config], epochs=self.c.epochs)

    def decide(self, rule, trial_id: int, config, point: dict[str, float], previous: float) -> bool:
        return rule is not None and rule.check(int(point["epoch"]), float(point["metric"]), point.get("energy_j"),
                                               previous=previous) is not None


class MoashaRule:
    """Syne Tune's MOASHA scheduler, fed each epoch's result as its tuner would feed it."""

    def __init__(self, curves: Curves, seed: int):
        from syne_tune.config_space import choice
        from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

        self.c = curves
        self.scheduler = MOASHA(
            {d: choice(list(curves.table.values[d])) for d in DIMS}, metrics=["neg_metric", "latency_ratio", "energy_j"],
            do_minimize=True, time_attr="epoch", max_t=curves.epochs, grace_period=1,
            reduction_factor=REDUCTION_FACTOR, random_seed=seed,
        )

    def suggest(self) -> tuple[Any, ...]:
        config = self.scheduler.suggest().config
        return tuple(config[d] for d in DIMS)

    def start(self, trial_id: int, config: tuple[Any, ...], baseline: bool):
        from syne_tune.backend.trial_status import Trial

        trial = Trial(trial_id=trial_id, config=dict(zip(DIMS, config)), creation_time=datetime.datetime.now())
        self.scheduler.on_trial_add(trial)
        return trial

    def _result(self, config, point: dict[str, float]) -> dict[str, float]:
        return {"epoch": int(point["epoch"]), "neg_metric": -float(point["metric"]),
                "latency_ratio": self.c.untrained[config]["fp32"]["latency_ratio"], "energy_j": float(point["energy_j"] or 0.0)}

    def decide(self, trial, trial_id: int, config, point: dict[str, float], previous: float) -> bool:
        result = self._result(config, point)
        decision = self.scheduler.on_trial_result(trial, result)
        if result["epoch"] >= self.c.epochs:
            self.scheduler.on_trial_complete(trial, result)
            return False
        if decision == "STOP":
            self.scheduler.on_trial_remove(trial)
            return True
        return False


class NoRule:
    def start(self, trial_id, config, baseline):
        return None

    def decide(self, rule, trial_id, config, point, previous) -> bool:
        return False


# -- one system -------------------------------------------------------------------------------------


def _dists(table: Table) -> dict[str, CategoricalDistribution]:
    return {d: CategoricalDistribution(table.values[d]) for d in DIMS} | {"precision": CategoricalDistribution(PRECISIONS)}


def system(curves: Curves, arm: str, seed: int, budget: float) -> Trace:
    """One arm, one seed, until its epochs reach `budget` (the run under way when it does is not counted)."""
    table, epochs = curves.table, curves.epochs
    dists = _dists(table)
    stream = arm.startswith("stream-")
    np.random.seed(seed)  # MOASHA's suggest draws from numpy's global generator
    rng = np.random.RandomState(seed)
    study = optuna.create_study(directions=list(DIRECTIONS),
                                sampler=optuna.samplers.RandomSampler(seed=seed) if stream or arm == "moasha" else make_sampler(seed))
    if not stream and arm != "moasha":
        baseline = {k: v for k, v in BASELINE.items() if v in dists[k].choices}
        study.enqueue_trial(baseline, user_attrs=record.baseline_attrs())
    rule_name = arm.removeprefix("stream-")
    rule = {"effsearch": lambda: EffsearchRule(curves, study), "moasha": lambda: MoashaRule(curves, seed),
            "none": NoRule}[rule_name]()
    front = Front(table)
    trace = Trace([], [])
    spent = 0
    while spent < budget:
        if arm == "moasha":
            config = rule.suggest()
            study.enqueue_trial({**dict(zip(DIMS, config)), "precision": "fp32"})
        elif stream:
            config = tuple(table.values[d][rng.randint(len(table.values[d]))] for d in DIMS)
            study.enqueue_trial({**dict(zip(DIMS, config)), "precision": "fp32"})
        trial = study.ask()
        params = {name: trial.suggest_categorical(name, dists[name].choices) for name in (*DIMS, "precision")}
        config = table.config_key(params)
        trace.runs += 1
        record.write(trial, lead=True, run=trace.runs, run_trial=trial.number)
        decider = rule.start(trial.number, config, bool(trial.user_attrs.get("baseline")))
        previous, points, stopped = CHANCE, [], False
        for point in curves.curve[config]:
            spent += 1
            points.append(point)
            if rule.decide(decider, trial.number, config, point, previous):
                stopped = True
                break
            previous = float(point["metric"])
        _tell(study, trial, params, curves, config, points, stopped, dists)
        if stopped:
            trace.stopped += 1
            trace.stopped_after.append(len(points))
            trace.front_stopped += config in front.on_true_front
        elif spent <= budget:
            trace.epochs.append(spent)
            trace.hv.append(front.add(config))
    return trace


def _tell(study, trial, params, curves: Curves, config, points, stopped: bool, dists) -> None:
    """Record the run as effsearch does: the lead trial with its curve, the other precisions as free trials."""
    untrained = curves.untrained[config]
    curve = [{"epoch": int(p["epoch"]), "metric": float(p["metric"]), "energy_j": p.get("energy_j")} for p in points]
    record.write(trial, config={"epochs": curves.epochs}, curve=curve, untrained=untrained[params["precision"]])
    if stopped:
        record.write(trial, stopped=f"stopped after epoch {len(points)}")
        study.tell(trial, state=TrialState.PRUNED)
        return
    raw = curves.table.raw[config]
    lead = params["precision"]
    record.write(trial, metrics=_metrics(raw[lead]))
    study.tell(trial, list(raw[lead]))
    for p in PRECISIONS:
        if p != lead:
            attrs = record.TrialRecord(lead=False, run=None, run_trial=trial.number, untrained=untrained[p],
                                       metrics=_metrics(raw[p])).user_attrs()
            study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, values=list(raw[p]),
                                                      params={**params, "precision": p}, distributions=dists, user_attrs=attrs))


def _metrics(values: Sequence[float]) -> dict[str, float]:
    return dict(zip(OBJECTIVES, (float(v) for v in values)))


# -- the comparison ---------------------------------------------------------------------------------


def job(args: tuple[str, str, int]) -> dict[str, Any]:
    """One arm, one seed: its trace to the full no-stopping budget (RUNS runs' epochs)."""
    quiet_worker()
    path, arm, seed = args
    curves = load_curves(Path(path))
    budget = RUNS * curves.epochs if arm in ("none", "stream-none") else HALF * RUNS * curves.epochs
    trace = system(curves, arm, seed, budget)
    return {"arm": arm, "seed": seed, "epochs": trace.epochs, "hv": trace.hv, "runs": trace.runs,
            "stopped": trace.stopped, "stopped_after": trace.stopped_after, "front_stopped": trace.front_stopped,
            "budget": budget}


def summary(results: list[dict[str, Any]], epochs: int) -> dict[str, Any]:
    """Per arm: the hypervolume at half the no-stopping arm's epochs (median, least, most over seeds)."""
    half = HALF * RUNS * epochs
    out: dict[str, Any] = {}
    for arm in ARMS:
        rs = [r for r in results if r["arm"] == arm]
        if not rs:
            continue
        at = [Trace(r["epochs"], r["hv"]).at(half) for r in rs]
        out[arm] = {"hv_at_half_epochs": statistics.median(at), "min": min(at), "max": max(at), "seeds": len(rs),
                    "runs": statistics.median(r["runs"] for r in rs), "stopped": statistics.median(r["stopped"] for r in rs),
                    "stopped_after_epoch": dict(sorted(Counter(e for r in rs for e in r["stopped_after"]).items())),
                    "front_configurations_stopped": sum(r["front_stopped"] for r in rs)}
        if arm.endswith("none"):
            out[arm]["hv_at_full_epochs"] = statistics.median(Trace(r["epochs"], r["hv"]).at(RUNS * epochs) for r in rs)
    return out
