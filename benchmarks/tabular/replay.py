"""Replay samplers on the tabulated benchmark: hypervolume per training run, as effsearch records a study.

The table holds every configuration of a grid trained once, with its four precisions: by default the
MNIST-1D CNN's (make_mnist1d_table.py, 8 epochs, with learning curves; latencies timed together after it
trained), or with --table breast_cancer_mlp.csv the breast-cancer MLP's (make_table.py, 1 epoch).
A replayed study searches the grid's values (every dimension categorical over them) with a sampler from
a factory `seed -> sampler`, and records what effsearch records: the dense baseline first (queued); a
training run's sampled precision is its lead trial and the other three precisions are added as finished
trials (`study.add_trial`); in the size-limit arm a configuration none of whose precisions meets the limit
(untrained size, as screening judges it) is screened: its four precisions are PRUNED trials with their
limit values and it is no training run. The budget counts training runs.

Objectives (the study's three: metric, latency_ms, energy_j) are scaled to [0, 1] over the whole table,
each in its "smaller is better" form; the reference point lies 0.05 past the true front's worst value
in each objective, and every figure is a fraction of the true front's hypervolume (in the size-limit arm,
the front of the configurations that meet the limit; only feasible trials count).

With curves in the table, the stopping rules are replayed too, as whole systems with the budget in
epochs (stopping.py: effsearch's sampler and rule, the same without stopping, Syne Tune's MOASHA; the
`bench` extra installs syne-tune).

    python benchmarks/tabular/replay.py                       # every candidate, both arms, the stopping rules
    python benchmarks/tabular/replay.py --candidates default random --seeds 3
    python benchmarks/tabular/replay.py --json                # figures on stderr, one JSON object on stdout
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.trial import TrialState

from effsearch import record
from effsearch.results.hypervolume import hypervolume, nondominated
from effsearch.sampler import STARTUP_RUNS, TPEAfterScreened, TrainingRunStartup, make_sampler
from effsearch.study.screening import MAX_SCREENED_IN_ROW, SIZE_MARGIN

HERE = Path(__file__).resolve().parent
TABLE = HERE / "mnist1d_cnn.csv"  # make_mnist1d_table.py: the MNIST-1D CNN, with curves
BREAST_CANCER = HERE / "breast_cancer_mlp.csv"  # make_table.py: the breast-cancer MLP, one epoch
DIMS = ("batch_size", "lr", "lr_schedule", "clip_norm", "prune_ratio")  # suggested in effsearch's order
PRECISIONS = ("fp32", "fp16", "int8_dynamic", "int8_static")
BASELINE = {"batch_size": 64, "lr": 3e-3, "lr_schedule": "cosine", "clip_norm": 0.0, "prune_ratio": 0.0, "precision": "fp32"}
DIRECTIONS = ("maximize", "minimize", "minimize")  # metric (accuracy), latency_ms, energy_j
MARGIN = 0.05  # the reference point, past the true front's worst scaled value
CHECKPOINTS = (15, 30, 60)
RANDOM_RUNS = 300
SIZE_LIMIT_QUANTILE = 0.5  # the size-limit arm screens out about this fraction of the grid

Factory = Callable[[int], BaseSampler]


# -- candidates -------------------------------------------------------------------------------------


def _tpe(seed: int, *, multivariate: bool = True, startup: int = STARTUP_RUNS, **options: Any) -> BaseSampler:
    tpe = optuna.samplers.TPESampler(seed=seed, multivariate=multivariate, n_startup_trials=0, **options)
    return TrainingRunStartup(tpe, startup_runs=startup, seed=seed)


def _gp(seed: int, *, startup: int = STARTUP_RUNS, after_screened: bool = False) -> BaseSampler:
    # GPSampler fits on COMPLETE trials only (n_startup_trials=1: it never fits on none).
    model: BaseSampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=1)
    if after_screened:
        model = TPEAfterScreened(model, seed=seed)
    return TrainingRunStartup(model, startup_runs=startup, seed=seed)


CANDIDATES: dict[str, tuple[str, Factory]] = {
    "default": ("make_sampler (the default)", make_sampler),
    "tpe-trials": ("TPE multivariate, startup 8 trials (the old default)",
                   lambda s: optuna.samplers.TPESampler(seed=s, multivariate=True, n_startup_trials=8)),
    "tpe-mv-4": ("TPE multivariate, startup 4 runs", lambda s: _tpe(s, startup=4)),
    "tpe-mv-8": ("TPE multivariate, startup 8 runs", lambda s: _tpe(s)),
    "tpe-mv-16": ("TPE multivariate, startup 16 runs", lambda s: _tpe(s, startup=16)),
    "tpe-ind-8": ("TPE independent, startup 8 runs", lambda s: _tpe(s, multivariate=False)),
    "tpe-ind-4": ("TPE independent, startup 4 runs", lambda s: _tpe(s, multivariate=False, startup=4)),
    "tpe-mv-4-ei": ("TPE multivariate, startup 4 runs, 96 EI candidates", lambda s: _tpe(s, startup=4, n_ei_candidates=96)),
    "tpe-mv-4-group": ("TPE multivariate, grouped, startup 4 runs", lambda s: _tpe(s, startup=4, group=True)),
    "gp-4": ("GPSampler, startup 4 runs", lambda s: _gp(s, startup=4)),
    "gp-8": ("GPSampler, startup 8 runs", _gp),
    "gp-tpe-4": ("GPSampler, TPE after a screened suggestion, startup 4 runs", lambda s: _gp(s, startup=4, after_screened=True)),
    "gp-tpe-2": ("GPSampler, TPE after a screened suggestion, startup 2 runs", lambda s: _gp(s, startup=2, after_screened=True)),
    "gp-tpe-8": ("GPSampler, TPE after a screened suggestion, startup 8 runs", lambda s: _gp(s, after_screened=True)),
    "nsga2-10": ("NSGA-II, population 10", lambda s: optuna.samplers.NSGAIISampler(seed=s, population_size=10)),
    "random": ("random search", lambda s: optuna.samplers.RandomSampler(seed=s)),
}


# -- the table --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """The grid's configurations: per configuration and precision, the scaled objectives and the size."""

    values: dict[str, tuple[Any, ...]]  # each dimension's grid values
    points: dict[tuple[Any, ...], dict[str, np.ndarray]]  # config -> precision -> scaled objectives
    raw: dict[tuple[Any, ...], dict[str, tuple[float, float, float]]]  # config -> precision -> (metric, latency, energy)
    size_bytes: dict[tuple[Any, ...], dict[str, float]]  # untrained size, as screening sees it

    def config_key(self, params: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(params[d] for d in DIMS)

    def true_front(self, size_limit: float | None = None) -> np.ndarray:
        pts = [p for c, by in self.points.items() for prec, p in by.items()
               if size_limit is None or self.size_bytes[c][prec] <= size_limit]
        return nondominated(np.array(pts))

    def scoring(self, size_limit: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
        """The true front, the reference point MARGIN past its worst values, and its hypervolume."""
        front = self.true_front(size_limit)
        ref = front.max(axis=0) + MARGIN
        return front, ref, hypervolume(front, ref)

    def size_limit(self, quantile: float = SIZE_LIMIT_QUANTILE) -> float:
        smallest = sorted(min(by.values()) for by in self.size_bytes.values())
        return float(np.quantile(smallest, quantile, method="lower"))


def _value(name: str, text: str) -> Any:
    if name == "lr_schedule":
        return text
    if name == "batch_size":
        return int(float(text))
    return float(text)


def _latencies(path: Path) -> dict[tuple[str, str], float]:
    """(graph, precision) -> p50 ms from <table>_latency.csv, timed together once the table was trained."""
    timed = path.with_name(f"{path.stem}_latency.csv")
    if not timed.exists():
        raise SystemExit(f"{path} has no latency_ms column and {timed} is missing: run make_mnist1d_table.py --latency")
    with open(timed, newline="") as f:
        return {(r["graph"], r["precision"]): float(r["p50_ms"]) for r in csv.DictReader(f)}


def load_table(path: Path) -> Table:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "latency_ms" not in rows[0]:  # the MNIST-1D table: latencies timed after it trained
        timed = _latencies(path)
        rows = [{**r, "latency_ms": timed[(r["graph"], r["precision"])]} for r in rows]
    values = {d: tuple(sorted({_value(d, r[d]) for r in rows}, key=lambda v: (str(type(v)), v))) for d in DIMS}
    objectives = np.array([[float(r["metric"]), float(r["latency_ms"]), float(r["energy_j"])] for r in rows])
    minimised = objectives * np.array([-1.0 if d == "maximize" else 1.0 for d in DIRECTIONS])
    lo, hi = minimised.min(axis=0), minimised.max(axis=0)
    scaled = (minimised - lo) / np.where(hi > lo, hi - lo, 1.0)
    points: dict[tuple[Any, ...], dict[str, np.ndarray]] = {}
    raw: dict[tuple[Any, ...], dict[str, tuple[float, float, float]]] = {}
    sizes: dict[tuple[Any, ...], dict[str, float]] = {}
    for r, p, o in zip(rows, scaled, objectives):
        key = tuple(_value(d, r[d]) for d in DIMS)
        points.setdefault(key, {})[r["precision"]] = p
        raw.setdefault(key, {})[r["precision"]] = tuple(float(x) for x in o)
        sizes.setdefault(key, {})[r["precision"]] = float(r.get("untrained_size_bytes") or r["size_bytes"])
    expected = int(np.prod([len(v) for v in values.values()]))
    whole = [c for c, by in points.items() if len(by) == len(PRECISIONS)]
    if len(whole) != expected:
        raise SystemExit(
            f"{path}: {len(whole)} whole configurations (every precision), not the grid's {expected}; remake the table"
        )
    return Table(values, points, raw, sizes)


# -- one replayed study -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Replayed:
    """One replayed study: its hypervolume fraction at each checkpoint, and what screening did to it."""

    hv: dict[int, float]
    screened: int  # suggestions screened out (size-limit arm)
    stopped_at: int | None  # training runs done when MAX_SCREENED_IN_ROW suggestions in a row ended it


def replay(table: Table, factory: Factory, seed: int, runs: int, size_limit: float | None = None,
           checkpoints: Sequence[int] = CHECKPOINTS) -> Replayed:
    """Run one study of `runs` training runs on the table, as effsearch records it."""
    dists = {d: CategoricalDistribution(table.values[d]) for d in DIMS} | {"precision": CategoricalDistribution(PRECISIONS)}
    limit_mb = None if size_limit is None else size_limit / 1e6
    study = optuna.create_study(directions=list(DIRECTIONS), sampler=factory(seed))
    baseline = {k: v for k, v in BASELINE.items() if v in dists[k].choices}
    if len(baseline) == len(dists):
        study.enqueue_trial(baseline, user_attrs=record.baseline_attrs())
    _, ref, true_hv = table.scoring(size_limit)
    found: list[np.ndarray] = []
    out: dict[int, float] = {}
    done = screened_in_row = screened = 0
    while done < runs and screened_in_row < MAX_SCREENED_IN_ROW:
        trial = study.ask()
        params = {name: trial.suggest_categorical(name, dists[name].choices) for name in (*DIMS, "precision")}
        record.write(trial, lead=True)
        config, lead = table.config_key(params), params["precision"]
        sizes = table.size_bytes[config]
        limits = {} if limit_mb is None else {p: {"max_size_mb": sizes[p] / 1e6 - limit_mb} for p in PRECISIONS}
        is_baseline = bool(trial.user_attrs.get("baseline"))
        if limit_mb is not None and not is_baseline and min(sizes.values()) > size_limit * (1 + SIZE_MARGIN):
            reason = "screened: size over the limit for every precision"
            record.write(trial, screened=reason)
            trial.set_constraint("max_size_mb", limits[lead]["max_size_mb"])
            study.tell(trial, state=TrialState.PRUNED)
            for p in PRECISIONS:
                if p != lead:
                    study.add_trial(optuna.trial.create_trial(
                        state=TrialState.PRUNED, params={**params, "precision": p}, distributions=dists,
                        user_attrs=record.TrialRecord(lead=False, run_trial=trial.number, screened=reason).user_attrs(),
                        constraints=limits[p],
                    ))
            screened_in_row += 1
            screened += 1
            continue
        screened_in_row = 0
        for key, value in limits.get(lead, {}).items():
            trial.set_constraint(key, value)
        study.tell(trial, list(table.raw[config][lead]))
        for p in PRECISIONS:
            if p != lead:
                study.add_trial(optuna.trial.create_trial(
                    state=TrialState.COMPLETE, values=list(table.raw[config][p]), params={**params, "precision": p},
                    distributions=dists, user_attrs=record.TrialRecord(lead=False, run_trial=trial.number).user_attrs(),
                    constraints=limits.get(p) or None,
                ))
        found.extend(table.points[config][p] for p in PRECISIONS if size_limit is None or sizes[p] <= size_limit)
        done += 1
        if done in checkpoints:
            out[done] = hypervolume(np.array(found), ref) / true_hv if found else 0.0
    # A study stopped by screening keeps the figure it reached.
    last = hypervolume(np.array(found), ref) / true_hv if found else 0.0
    hv = {c: out.get(c, last) for c in checkpoints if c <= runs}
    return Replayed(hv, screened, done if done < runs else None)


# In the open arm nothing is screened: these candidates are their model alone, suggestion for suggestion.
SAME_WITHOUT_SCREENING = {"gp-tpe-8": "gp-8", "gp-tpe-4": "gp-4"}


def quiet_worker() -> None:
    """A replay process: one torch thread, no warnings, only errors logged."""
    import torch

    torch.set_num_threads(1)  # GPSampler's torch threads, on a shared machine, ran it 5x slower than one
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("effsearch").setLevel(logging.ERROR)


def _job(job: tuple[str, str, int, str, float | None]) -> dict[str, Any]:
    path, name, seed, arm, limit = job
    quiet_worker()
    runs = RANDOM_RUNS if name == "random" else max(CHECKPOINTS)
    checkpoints = (*CHECKPOINTS, RANDOM_RUNS) if name == "random" else CHECKPOINTS
    t0 = time.perf_counter()
    r = replay(load_table(Path(path)), CANDIDATES[name][1], seed, runs, limit, checkpoints)
    return {"candidate": name, "arm": arm, "seed": seed, "hv": {str(k): v for k, v in r.hv.items()}, "screened": r.screened,
            "stopped_at": r.stopped_at, "seconds": time.perf_counter() - t0}


def _same(job: tuple[str, str, int]) -> tuple[str, str, int]:
    """The replay that stands for `job` (one that behaves the same in the open arm is run once)."""
    name, arm, seed = job
    return (SAME_WITHOUT_SCREENING.get(name, name) if arm == "open" else name, arm, seed)


def _table_id(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--gp-seeds", type=int, default=5, help="seeds of the GP-based candidates (the default among them)")
    ap.add_argument("--stopping", action=argparse.BooleanOptionalAction, default=None,
                    help="also replay the stopping rules on the curves (default: when the table has curves)")
    ap.add_argument("--stopping-seeds", type=int, default=None, help="seeds of the stopping arms (default: --seeds; "
                    "--gp-seeds for the arms searched by the default sampler)")
    ap.add_argument("--arms", nargs="+", default=["open", "size"], choices=["open", "size"])
    ap.add_argument("--jobs", type=int, default=1, help="replays run in parallel")
    ap.add_argument("--results", type=Path, default=None,
                    help="a JSON-lines file of replays: those of this table found there are not run again, new ones are added")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args()
    table = load_table(args.table)
    limit = table.size_limit()
    n_screened = sum(min(by.values()) > limit * (1 + SIZE_MARGIN) for by in table.size_bytes.values())
    say(f"{len(table.points)} configurations; the size limit {limit / 1e3:.2f} kB screens out {n_screened}")
    table_id = _table_id(args.table)
    done: dict[tuple[str, str, int], dict[str, Any]] = {}
    if args.results and args.results.exists():
        for line in args.results.read_text().splitlines():
            r = json.loads(line)
            if r.get("table") == table_id:
                done[(r["candidate"], r["arm"], r["seed"])] = r
    wanted = [(name, arm, seed) for name in args.candidates for arm in args.arms for seed in range(_seeds(name, args))]
    runs = sorted({_same(w) for w in wanted} - set(done), key=[_same(w) for w in wanted].index)
    jobs = [(str(args.table), name, seed, arm, limit if arm == "size" else None) for name, arm, seed in runs]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for r in pool.map(_job, jobs):
            r["table"] = table_id
            done[(r["candidate"], r["arm"], r["seed"])] = r
            if args.results:
                with open(args.results, "a") as f:
                    f.write(json.dumps(r) + "\n")
            say(f"{r['candidate']} {r['arm']} seed {r['seed']}: " + ", ".join(f"{k} runs {v:.3f}" for k, v in r["hv"].items())
                + f"; {r['screened']} screened ({r['seconds']:.0f} s)")
    summary = _summary([{**done[_same(w)], "candidate": w[0]} for w in wanted])
    _print_table(summary, args.seeds, args.gp_seeds)
    ratio = None
    for arm in args.arms:
        if f"random/{arm}" in summary and f"default/{arm}" in summary:
            goal = 0.95 * summary[f"random/{arm}"]["hv"][str(RANDOM_RUNS)]
            got = summary[f"default/{arm}"]["hv"]["30"]
            if arm == "open":
                ratio = got / summary[f"random/{arm}"]["hv"][str(RANDOM_RUNS)]
            say(f"{arm}: default after 30 runs {got:.3f} vs 0.95 x random after {RANDOM_RUNS} runs = {goal:.3f}: "
                f"{'met' if got >= goal else 'not met'}")
    out: dict[str, Any] = {"sampler": {"hv30_vs_random300": ratio, "candidates": summary, "size_limit_bytes": limit,
                                       "screened_configurations": n_screened}}
    if args.stopping or (args.stopping is None and _has_curves(args.table)):
        out["stopping"] = _stopping(args)
    if args.json:
        print(json.dumps(out, indent=2))


def _seeds(name: str, args: argparse.Namespace) -> int:
    """GP-based candidates (the default among them) cost ~10x a TPE replay: fewer seeds."""
    return min(args.seeds, args.gp_seeds) if name == "default" or name.startswith("gp") else args.seeds


def _has_curves(path: Path) -> bool:
    with open(path, newline="") as f:
        return "curve" in (csv.DictReader(f).fieldnames or ())


def _stopping(args: argparse.Namespace) -> dict[str, Any]:
    """The stopping rules as whole systems (stopping.py), at half the no-stopping arm's epochs."""
    import stopping

    jobs = []
    for arm in stopping.ARMS:
        seeds = args.stopping_seeds or (_seeds("default", args) if arm in ("effsearch", "none") else args.seeds)
        jobs += [(str(args.table), arm, seed) for seed in range(seeds)]
    results = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for r in pool.map(stopping.job, jobs):
            results.append(r)
            say(f"stopping {r['arm']} seed {r['seed']}: {r['runs']} runs, {r['stopped']} stopped, "
                f"hv {r['hv'][-1] if r['hv'] else 0.0:.3f} after {r['epochs'][-1] if r['epochs'] else 0} epochs")
    epochs = stopping.load_curves(args.table).epochs
    s = stopping.summary(results, epochs)
    half = stopping.HALF * stopping.RUNS * epochs
    say(f"\nhypervolume fraction at {half:.0f} epochs (half of {stopping.RUNS} runs of {epochs} epochs), median (least, most)\n")
    say("| system | hypervolume | runs begun | stopped | stops after epoch k (all seeds) | of a true-front configuration |")
    say("| --- | --- | --- | --- | --- | --- |")
    for arm, v in s.items():
        after = ", ".join(f"{k}: {n}" for k, n in v["stopped_after_epoch"].items())
        say(f"| {arm} | {v['hv_at_half_epochs']:.3f} ({v['min']:.3f}, {v['max']:.3f}) | {v['runs']:.0f} | {v['stopped']:.0f} | "
            f"{after} | {v['front_configurations_stopped']} |")
    hv = {arm: s[arm]["hv_at_half_epochs"] for arm in ("effsearch", "moasha", "none") if arm in s}
    met = hv["effsearch"] >= hv["moasha"] if {"effsearch", "moasha"} <= set(hv) else None
    say(f"effsearch's system {hv.get('effsearch', float('nan')):.3f} vs MOASHA's {hv.get('moasha', float('nan')):.3f}: "
        f"{'met' if met else 'not met'}")
    return {"hv_at_half_epochs": hv, "goal_met": met, "epochs_budget": half, "arms": s,
            "stream": {arm.removeprefix("stream-"): v["hv_at_half_epochs"] for arm, v in s.items() if arm.startswith("stream-")}}


def say(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def _summary(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per candidate and arm: median, least and most hypervolume fraction at each checkpoint, screening, seconds."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(f"{r['candidate']}/{r['arm']}", []).append(r)
    return {
        key: {
            "hv": {k: statistics.median(r["hv"][k] for r in rs) for k in rs[0]["hv"]},
            "hv_min": {k: min(r["hv"][k] for r in rs) for k in rs[0]["hv"]},
            "hv_max": {k: max(r["hv"][k] for r in rs) for k in rs[0]["hv"]},
            "screened": statistics.mean(r["screened"] for r in rs),
            "stopped": sum(r["stopped_at"] is not None for r in rs),
            "seconds": statistics.mean(r["seconds"] for r in rs),
            "seeds": len(rs),
        }
        for key, rs in groups.items()
    }


def _print_table(summary: dict[str, dict[str, Any]], seeds: int, gp_seeds: int) -> None:
    marks = " | ".join(f"{k} runs" for k in CHECKPOINTS)
    say(f"\nhypervolume as a fraction of the true front's, median of {seeds} seeds ({min(seeds, gp_seeds)} for GP rows; "
        "least and most in brackets)\n")
    say(f"| sampler | arm | {marks} | random, {RANDOM_RUNS} runs | screened suggestions per study (stopped) | s per study |")
    say("| --- | --- |" + " --- |" * (len(CHECKPOINTS) + 3))
    for key, s in summary.items():
        name, arm = key.split("/")
        cells = " | ".join(_cell(s, str(k)) for k in CHECKPOINTS)
        last = _cell(s, str(RANDOM_RUNS)) if str(RANDOM_RUNS) in s["hv"] else ""
        screened = f"{s['screened']:.0f} ({s['stopped']})" if arm == "size" else ""
        say(f"| {CANDIDATES[name][0]} | {arm} | {cells} | {last} | {screened} | {s['seconds']:.0f} |")


def _cell(s: dict[str, Any], k: str) -> str:
    return f"{s['hv'][k]:.3f} ({s['hv_min'][k]:.3f}-{s['hv_max'][k]:.3f})"


if __name__ == "__main__":
    logging.getLogger("effsearch").setLevel(logging.ERROR)
    main()
