"""What screening saves: training time to reach a study's feasible front, with and without screening.

The digits example (or --file) under a latency limit of --limit (0.5) x the dense baseline's latency. Per seed: a reference
study of --runs training runs without screening (the limit is a constraint only), then a study with
screening that runs until its feasible front's hypervolume reaches the reference's final feasible
hypervolume (capped at --cap training runs). A seed whose reference has an empty feasible front is
invalid and re-drawn. Hypervolume is taken on objectives scaled by fixed bounds, the dense baseline's
figures (accuracy, latency and energy over the baseline's), with one reference point for every study and
seed: 80 % of the baseline's accuracy, its latency, 3x its energy. Reported per seed: training seconds (the runs' own train_s, summed) and wall seconds to get there,
runs trained, configurations screened out; then the median ratio.

The early-stopping arms (--part early-stop): the same example with epochs raised to 8, per seed 0-2 two
studies without limits train the same 40 configurations: one without early stopping, which samples them,
and one with it, which takes them queued from the first, in interleaved blocks of --block runs so that the
machine's drift falls on both alike. Reported per seed: epochs trained (stopped runs count the epochs they
ran), the ratio without / with, and the final hypervolume ratio with / without on a fixed reference point
(objectives scaled by the first arm's dense baseline; latency as the shared pre-training ratio to the
untrained dense model, the same figure for the same graph in both arms). Goal: epochs ratio >= 1.5 at a
hypervolume ratio >= 0.98 in every seed.

    python benchmarks/study_cost.py                 # both parts: 3 seeds, 40 reference runs, cap 80
    python benchmarks/study_cost.py --part early-stop --db /tmp/cost.db
    python benchmarks/study_cost.py --json          # one JSON object on stdout, figures on stderr
    python benchmarks/study_cost.py --part screening --seeds 1 --file examples/mnist1d_cnn.py --limit 0.6
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from effsearch import record
from effsearch.constraints import Constraints
from effsearch.objectives import parse_objectives
from effsearch.results.hypervolume import hypervolume
from effsearch.space import load_space
from effsearch.study import TuneSettings, tune
from effsearch.train.pool import hardware_world_sizes
from effsearch.train.stopping import CATCH_UP, FIRST_STOP_EPOCH, STOP_MARGIN
from effsearch.userfile import load_user_file, probe

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits_cnn.py"
# Scaled objectives (each "smaller is better"; the dense baseline is -1, 1, 1): minus the accuracy ratio,
# the latency ratio and the energy ratio to the baseline's.
REFERENCE = np.array([-0.8, 1.0, 3.0])


def say(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def scaled(t: record.RecordedTrial, bounds: dict[str, float]) -> np.ndarray:
    m = t.metrics
    return np.array([-m["accuracy"] / bounds["accuracy"], m["latency_ms"] / bounds["latency_ms"], m["energy_j"] / bounds["energy_j"]])


def feasible_hv(study: optuna.Study, bounds: dict[str, float]) -> float:
    done = [t for t in record.read_all(study, states=(TrialState.COMPLETE,)) if not t.infeasible]
    return hypervolume(np.array([scaled(t, bounds) for t in done]).reshape(-1, 3), REFERENCE) if done else 0.0


def cost(study: optuna.Study) -> tuple[float, int, int]:
    """(training seconds summed over the runs, runs trained, configurations screened out)."""
    trials = record.read_all(study)
    runs = [t for t in trials if t.is_training_run]
    train_s = sum(float((t.record.timing or {}).get("train_s", 0.0)) for t in runs)
    return train_s, len(runs), sum(t.lead and t.record.screened is not None for t in trials)


def settings_of(args: argparse.Namespace, tmp: Path, name: str, seed: int, runs: int, **kw) -> TuneSettings:
    uf = load_user_file(args.file)
    _, hw = hardware_world_sizes()
    space = load_space(None, hw).clamp_world_size(hw)
    keys, dirs = parse_objectives(None, uf.metric_key, uf.registration.metric_direction)
    return TuneSettings(
        study_name=name, storage_url=args.db or f"sqlite:///{tmp}/cost.db", trials=runs, space=space, objectives=keys,
        directions=dirs, epochs=kw.pop("epochs", None) or args.epochs or uf.registration.epochs, seed=seed, artifacts=tmp, **kw,
    )


def run_settings(args: argparse.Namespace, settings: TuneSettings, until=None) -> tuple[optuna.Study, float]:
    uf = load_user_file(args.file)
    info, datasets = probe(uf)
    t0 = time.perf_counter()
    _, summary = tune(settings, uf=uf, probe=info, datasets=datasets, until=until)
    return summary.study, time.perf_counter() - t0


def run(args: argparse.Namespace, tmp: Path, name: str, seed: int, runs: int, limit_ms: float, screening: bool, until=None):
    settings = settings_of(args, tmp, name, seed, runs, constraints=Constraints(max_latency_ms=limit_ms), screening=screening)
    return run_settings(args, settings, until)


# Early-stopping arms: scaled objectives as above, latency as the pre-training ratio (the dense model is
# 1.0), with a fixed reference point a little beyond the dense model's latency.
STOP_REFERENCE = np.array([-0.8, 1.1, 3.0])
STOP_EPOCHS = 8


def graph_key(t: record.RecordedTrial) -> tuple[float, str]:
    return (float(t.config.get("prune_ratio", 0.0)), str(t.params.get("precision")))


def untrained_ratios(study: optuna.Study) -> dict[tuple[float, str], float]:
    """Each (prune ratio, precision)'s untrained latency ratio, as the study measured it before training."""
    out = {}
    for t in record.read_all(study):
        if t.record.untrained and "latency_ratio" in t.record.untrained:
            out.setdefault(graph_key(t), float(t.record.untrained["latency_ratio"]))
    return out


def run_key(t: record.RecordedTrial, leads: dict[int, record.RecordedTrial]) -> str:
    """A trial's run, named by its lead's parameters: the same in both arms (the second takes them queued)."""
    return json.dumps(leads[t.run_trial].params, sort_keys=True)


def training_energy(study: optuna.Study) -> dict[str, float]:
    """Each completed run's training energy, by run_key."""
    every = record.read_all(study)
    leads = {t.number: t for t in every if t.lead}
    return {run_key(t, leads): float(t.metrics["energy_j"]) for t in every if t.state == TrialState.COMPLETE and not t.reference}


def stop_hv(study: optuna.Study, bounds: dict[str, float], ratios: dict[tuple[float, str], float], energy: dict[str, float] | None = None) -> float:
    """The final hypervolume; energy: each run's training energy taken from there (the shared figure), else its own."""
    every = record.read_all(study)
    leads = {t.number: t for t in every if t.lead}
    done = [t for t in every if t.state == TrialState.COMPLETE and not t.reference and graph_key(t) in ratios]
    pts = []
    for t in done:
        joules = energy.get(run_key(t, leads), t.metrics["energy_j"]) if energy is not None else t.metrics["energy_j"]
        pts.append([-t.metrics["accuracy"] / bounds["accuracy"], ratios[graph_key(t)], joules / bounds["energy_j"]])
    return hypervolume(np.array(pts).reshape(-1, 3), STOP_REFERENCE) if pts else 0.0


def same_curves(a: optuna.Study, b: optuna.Study) -> tuple[int, int]:
    """(runs completed in b whose curve's metrics equal a's run of the same parameters, runs completed in b)."""
    curves = {json.dumps(t.params, sort_keys=True): [p["metric"] for p in t.curve] for t in record.read_all(a) if t.lead}
    done = [t for t in record.read_all(b, states=(TrialState.COMPLETE,)) if t.lead and not t.baseline]
    same = sum(curves.get(json.dumps(t.params, sort_keys=True)) == [p["metric"] for p in t.curve] for t in done)
    return same, len(done)


def epochs_trained(study: optuna.Study) -> int:
    """Epochs the study's training runs trained: a completed run its curve's length, a stopped one as far as it got."""
    return sum(len(t.curve) for t in record.read_all(study) if t.is_training_run)


def queue_from(src: optuna.Study, dst: optuna.Study) -> None:
    """Queue in `dst` the training runs of `src` it does not hold yet, in their order (its baseline is its own)."""
    runs = sorted((t for t in record.read_all(src) if t.is_training_run), key=lambda t: t.run)
    held = sum(1 for t in dst.get_trials(deepcopy=False) if record.read(t).lead or t.state == TrialState.WAITING)
    for t in runs[max(1, held):]:
        dst.enqueue_trial(t.params)


def early_stop_seed(args: argparse.Namespace, tmp: Path, seed: int) -> dict:
    from effsearch.study.create import Instruments, open_study

    plain = settings_of(args, tmp, f"plain-{seed}", seed, 0, epochs=STOP_EPOCHS, early_stop=False)
    margin = STOP_MARGIN if args.margin is None else args.margin
    first = FIRST_STOP_EPOCH if args.first_epoch is None else args.first_epoch
    # Another margin or first epoch is another arm with stopping; the arm without it is shared (--db).
    tag = "" if (margin, first) == (STOP_MARGIN, FIRST_STOP_EPOCH) else f"-m{margin:g}-e{first}"
    stop = settings_of(args, tmp, f"stopping-{seed}{tag}", seed, 0, epochs=STOP_EPOCHS, early_stop_margin=margin,
                       early_stop_first_epoch=first)
    uf = load_user_file(args.file)
    info, _ = probe(uf)
    b_study = open_study(stop, uf=uf, probe=info, tools=Instruments.choose())
    t_plain = t_stop = 0.0
    for n in range(args.block, args.configs + args.block, args.block):
        n = min(n, args.configs)
        a_study, wall = run_settings(args, replace(plain, trials=n))
        t_plain += wall
        queue_from(a_study, b_study)
        b_study, wall = run_settings(args, replace(stop, trials=n))
        t_stop += wall
        say(f"seed {seed}: {n} runs each; epochs {epochs_trained(a_study)} without stopping, {epochs_trained(b_study)} with")
    (base,) = [t for t in record.read_all(a_study, states=(TrialState.COMPLETE,)) if t.baseline and t.params["precision"] == "fp32"]
    bounds = {"accuracy": base.metrics["accuracy"], "energy_j": base.metrics["energy_j"]}
    ratios = untrained_ratios(a_study)
    # A completed run trains alike in both arms (same parameters, seed and data: the same curve), so it gets
    # one training-energy figure, the first arm's, as each graph gets one latency figure: the arms' points
    # differ only by the runs stopping left out, not by the moment each arm's energy was read.
    shared = training_energy(a_study)
    hv_a, hv_b = stop_hv(a_study, bounds, ratios, shared), stop_hv(b_study, bounds, ratios, shared)
    own_b = stop_hv(b_study, bounds, ratios)
    same, completed = same_curves(a_study, b_study)
    e_a, e_b = epochs_trained(a_study), epochs_trained(b_study)
    stopped = [t for t in record.read_all(b_study) if t.stopped]
    row = {
        "seed": seed, "epochs_without": e_a, "epochs_with": e_b, "epochs_ratio": e_a / e_b if e_b else float("inf"),
        "hv_without": hv_a, "hv_with": hv_b, "hv_ratio": hv_b / hv_a if hv_a else float("nan"),
        "hv_ratio_own_energy": own_b / hv_a if hv_a else float("nan"), "same_curves": [same, completed],
        "stopped": len(stopped), "stopped_at": sorted(len(t.curve) for t in stopped),
        "wall_s_without": t_plain, "wall_s_with": t_stop,
    }
    say(f"seed {seed}: epochs {e_a} / {e_b} = {row['epochs_ratio']:.2f}x, {len(stopped)} runs stopped "
        f"(after epochs {row['stopped_at']}); hypervolume {hv_b:.4f} / {hv_a:.4f} = {row['hv_ratio']:.3f} "
        f"({row['hv_ratio_own_energy']:.3f} with each arm's own energy readings); {same} of {completed} completed runs "
        f"trained the first arm's curve exactly; wall {t_plain:.0f} s / {t_stop:.0f} s")
    return row


def early_stop_part(args: argparse.Namespace, tmp: Path) -> dict:
    rows = [early_stop_seed(args, tmp, seed) for seed in range(args.seeds)]
    worst = {"epochs_ratio": min(r["epochs_ratio"] for r in rows), "hv_ratio": min(r["hv_ratio"] for r in rows)}
    met = worst["epochs_ratio"] >= 1.5 and worst["hv_ratio"] >= 0.98
    say(f"early stopping, worst seed: epochs ratio {worst['epochs_ratio']:.2f}x, hypervolume ratio {worst['hv_ratio']:.3f} "
        f"(goal: >= 1.5x at >= 0.98 in every seed: {'met' if met else 'not met'})")
    return {**worst, "goal_met": met, "epochs": STOP_EPOCHS, "configs": args.configs,
            "margin": STOP_MARGIN if args.margin is None else args.margin,
            "first_epoch": FIRST_STOP_EPOCH if args.first_epoch is None else args.first_epoch, "catch_up": CATCH_UP, "seeds": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=40, help="training runs of each reference study")
    ap.add_argument("--cap", type=int, default=80, help="most training runs of a screening study")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--file", type=Path, default=EXAMPLE)
    ap.add_argument("--limit", type=float, default=0.5, help="screening's latency limit, x the dense baseline's latency")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    ap.add_argument("--part", choices=("both", "screening", "early-stop"), default="both")
    ap.add_argument("--configs", type=int, default=40, help="configurations each early-stopping arm trains")
    ap.add_argument("--block", type=int, default=10, help="runs per interleaved block of the early-stopping arms")
    ap.add_argument("--margin", type=float, default=None, help=f"early stopping's margin (default {STOP_MARGIN})")
    ap.add_argument("--first-epoch", type=int, default=None, help=f"first epoch a run may stop after (default {FIRST_STOP_EPOCH})")
    ap.add_argument("--db", default=None, help="storage URL to keep the studies in (default: a temporary SQLite file)")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("effsearch").setLevel(logging.ERROR)
    result = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if args.part != "screening":
            result["early_stop"] = early_stop_part(args, tmp)
        if args.part != "early-stop":
            result["screening"] = screening_part(args, tmp)
    if args.json:
        print(json.dumps(result, indent=2))


def screening_part(args: argparse.Namespace, tmp: Path) -> dict:
    base_study, _ = run(args, tmp, "dense", 0, 1, 1e9, False)
    (base,) = [t for t in record.read_all(base_study, states=(TrialState.COMPLETE,)) if t.baseline]
    bounds = {"accuracy": base.metrics["accuracy"], "latency_ms": base.metrics["latency_ms"], "energy_j": base.metrics["energy_j"]}
    limit = args.limit * bounds["latency_ms"]
    say(f"dense baseline: accuracy {base.metrics['accuracy']:.4f}, latency {bounds['latency_ms']:.4f} ms, "
        f"energy {bounds['energy_j']:.2f} J; limit {limit:.4f} ms ({args.limit:g}x)")
    rows, seed = [], 0
    while len(rows) < args.seeds:
        ref, ref_wall = run(args, tmp, f"reference-{seed}", seed, args.runs, limit, False)
        goal = feasible_hv(ref, bounds)
        if goal == 0.0:
            say(f"seed {seed}: the reference has no feasible point; drawn again")
            seed += 1
            continue
        scr, scr_wall = run(args, tmp, f"screening-{seed}", seed, args.cap, limit, True, until=lambda s: feasible_hv(s, bounds) >= goal)
        ref_s, ref_runs, _ = cost(ref)
        scr_s, scr_runs, screened = cost(scr)
        reached = feasible_hv(scr, bounds)
        rows.append({
            "seed": seed, "reference_hv": goal, "screening_hv": reached, "reached": reached >= goal,
            "reference_train_s": ref_s, "screening_train_s": scr_s, "reference_wall_s": ref_wall, "screening_wall_s": scr_wall,
            "reference_runs": ref_runs, "screening_runs": scr_runs, "screened": screened,
            "train_s_ratio": ref_s / scr_s if scr_s else float("inf"), "wall_s_ratio": ref_wall / scr_wall,
        })
        r = rows[-1]
        say(f"seed {seed}: reference {ref_runs} runs, {ref_s:.1f} s training ({ref_wall:.0f} s wall), HV {goal:.4f}; "
            f"screening {scr_runs} runs + {screened} screened, {scr_s:.1f} s training ({scr_wall:.0f} s wall), "
            f"HV {reached:.4f} ({'reached' if r['reached'] else 'not reached'}); training-time ratio {r['train_s_ratio']:.2f}x")
        seed += 1
    s = {
        "train_s_ratio": statistics.median(r["train_s_ratio"] for r in rows),
        "wall_s_ratio": statistics.median(r["wall_s_ratio"] for r in rows),
        "hv_ratio": statistics.median(r["screening_hv"] / r["reference_hv"] for r in rows),
        "latency_limit_ms": limit,
        "seeds": rows,
    }
    say(f"median training-time ratio (reference / screening) {s['train_s_ratio']:.2f}x, wall {s['wall_s_ratio']:.2f}x, "
        f"hypervolume ratio {s['hv_ratio']:.3f} (goal: >= 2x)")
    return s


if __name__ == "__main__":
    main()
