"""What screening saves: training time to reach a study's feasible front, with and without screening.

The digits example under a latency limit of 0.5x the dense baseline's latency. Per seed: a reference
study of --runs training runs without screening (the limit is a constraint only), then a study with
screening that runs until its feasible front's hypervolume reaches the reference's final feasible
hypervolume (capped at --cap training runs). A seed whose reference has an empty feasible front is
invalid and re-drawn. Hypervolume is taken on objectives scaled by fixed bounds, the dense baseline's
figures (accuracy, latency and energy over the baseline's), with one reference point for every study and
seed: 80 % of the baseline's accuracy, its latency, 3x its energy. Reported per seed: training seconds (the runs' own train_s, summed) and wall seconds to get there,
runs trained, configurations screened out; then the median ratio.

    python benchmarks/study_cost.py                 # 3 seeds, 40 reference runs, cap 80
    python benchmarks/study_cost.py --json          # one JSON object on stdout, figures on stderr
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
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


def run(args: argparse.Namespace, tmp: Path, name: str, seed: int, runs: int, limit_ms: float, screening: bool, until=None):
    uf = load_user_file(args.file)
    info, datasets = probe(uf)
    _, hw = hardware_world_sizes()
    space = load_space(None, hw).clamp_world_size(hw)
    keys, dirs = parse_objectives(None, uf.metric_key, uf.registration.metric_direction)
    settings = TuneSettings(
        study_name=name, storage_url=f"sqlite:///{tmp}/cost.db", trials=runs, space=space, objectives=keys,
        directions=dirs, epochs=args.epochs or uf.registration.epochs, seed=seed, artifacts=tmp,
        constraints=Constraints(max_latency_ms=limit_ms), screening=screening,
    )
    t0 = time.perf_counter()
    _, summary = tune(settings, uf=uf, probe=info, datasets=datasets, until=until)
    return summary.study, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=40, help="training runs of each reference study")
    ap.add_argument("--cap", type=int, default=80, help="most training runs of a screening study")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--file", type=Path, default=EXAMPLE)
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("effsearch").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        base_study, _ = run(args, tmp, "dense", 0, 1, 1e9, False)
        (base,) = [t for t in record.read_all(base_study, states=(TrialState.COMPLETE,)) if t.baseline]
        bounds = {"accuracy": base.metrics["accuracy"], "latency_ms": base.metrics["latency_ms"], "energy_j": base.metrics["energy_j"]}
        limit = 0.5 * bounds["latency_ms"]
        say(f"dense baseline: accuracy {base.metrics['accuracy']:.4f}, latency {bounds['latency_ms']:.4f} ms, "
            f"energy {bounds['energy_j']:.2f} J; limit {limit:.4f} ms")
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
    result = {
        "screening": {
            "train_s_ratio": statistics.median(r["train_s_ratio"] for r in rows),
            "wall_s_ratio": statistics.median(r["wall_s_ratio"] for r in rows),
            "hv_ratio": statistics.median(r["screening_hv"] / r["reference_hv"] for r in rows),
            "latency_limit_ms": limit,
            "seeds": rows,
        }
    }
    s = result["screening"]
    say(f"median training-time ratio (reference / screening) {s['train_s_ratio']:.2f}x, wall {s['wall_s_ratio']:.2f}x, "
        f"hypervolume ratio {s['hv_ratio']:.3f} (goal: >= 2x)")
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
