"""Compression reached on the digits CNN: the best front point within a metric drop of the dense fp32 baseline.

Runs a study (or reads one with --storage/--study), then prints the dense fp32 baseline (metric, latency
p50, size) and every front point whose metric is within --max-drop of it. Latencies are measured again
here, interleaved: after a warm-up, --blocks rounds in which every candidate and the baseline get --calls
timed calls each (the order rotating each round), one onnxruntime thread; a model's latency is the median
of its per-block medians and its ratio the median of its per-block ratios to the baseline, so that drift
of the machine hits all models alike. The study's stored p50 (measured once, during its run) is printed
beside it. The lowest-latency eligible point (by the re-measured ratio) is reported, and the
smallest-size one if different, against the goal of issue 3 (latency <= 0.5x, size <= 0.3x).

    python benchmarks/compression.py                       # 16 training runs, registered epochs
    python benchmarks/compression.py --runs 32 --space compress.toml
    python benchmarks/compression.py --storage sqlite:///studies/effsearch.db --study digits-cnn   # read only
    python benchmarks/compression.py --file examples/mobilenet_scratch.py --runs 16 --goal-latency 0.6 --goal-size 1
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna

from effsearch.measure.metric import stack_dataset
from effsearch.objectives import parse_objectives
from effsearch.onnx_export import INPUT_NAME
from effsearch.runtime import ort_session
from effsearch import record
from effsearch.results.front import FrontRow, baseline, front_rows, row_of, study_info
from effsearch.space import load_space
from effsearch.storage import open_storage, resolve_url, study_names
from effsearch.study import TuneSettings, tune
from effsearch.train.pool import hardware_world_sizes
from effsearch.userfile import load_user_file, probe

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits_cnn.py"
OBJECTIVES = "accuracy,latency_ms,size_bytes"
GOAL_LATENCY = 0.5
GOAL_SIZE = 0.3


@dataclass(frozen=True)
class Timed:
    """Re-measured latency of one artifact: median of per-block medians, and of per-block ratios to the baseline."""

    p50_ms: float
    block_p50_ms: tuple[float, ...]
    ratio: float
    ratio_lo: float
    ratio_hi: float


def interleaved(
    paths: dict[int, Path], base: int, sample: np.ndarray, blocks: int, calls: int, warmup: int, threads: int
) -> dict[int, Timed]:
    """Time every artifact in alternating blocks; ratios are taken block by block against `base`."""
    sessions = {k: ort_session(p, threads=threads) for k, p in paths.items()}
    feed = {INPUT_NAME: sample}
    for s in sessions.values():
        for _ in range(warmup):
            s.run(None, feed)
    keys = list(sessions)
    per_block: dict[int, list[float]] = {k: [] for k in keys}
    times = np.empty(calls)
    for b in range(blocks):
        # Rotate the order so that no model always runs right after the same other one.
        order = keys[b % len(keys):] + keys[: b % len(keys)]
        for k in order:
            run = sessions[k].run
            for i in range(calls):
                t0 = time.perf_counter_ns()
                run(None, feed)
                times[i] = time.perf_counter_ns() - t0
            per_block[k].append(float(np.median(times)) / 1e6)
    out = {}
    for k in keys:
        ratios = [a / b for a, b in zip(per_block[k], per_block[base])]
        out[k] = Timed(
            statistics.median(per_block[k]), tuple(per_block[k]), statistics.median(ratios), min(ratios), max(ratios)
        )
    return out


def _within(row: FrontRow, key: str, base: float, drop: float, direction: str) -> bool:
    value = float(row.metrics[key])
    # A hair of tolerance: 0.97 - 0.01 must admit 0.96 despite float rounding.
    return value >= base - drop - 1e-9 if direction == "maximize" else value <= base + drop + 1e-9


def _run_study(args: argparse.Namespace, url: str, name: str, artifacts: Path | None) -> optuna.Study:
    uf = load_user_file(args.file)
    info, datasets = probe(uf)
    _, hw = hardware_world_sizes()
    space = load_space(args.space, hw).clamp_world_size(hw)
    keys, dirs = parse_objectives(args.objectives, uf.metric_key, uf.registration.metric_direction)
    settings = TuneSettings(
        study_name=name, storage_url=url, trials=args.runs, space=space, objectives=keys, directions=dirs,
        epochs=args.epochs or uf.registration.epochs, seed=args.seed, artifacts=artifacts,
    )
    t0 = time.perf_counter()
    _, summary = tune(settings, uf=uf, probe=info, datasets=datasets)
    print(f"study {name}: {summary.runs_done} training runs ({summary.runs_here} here, {summary.failed_here} failed) "
          f"in {time.perf_counter() - t0:.0f} s, {len(summary.study.trials)} trials (one per precision per run)")
    return summary.study


def _fmt_row(label: str, row: FrontRow, key: str, base_metric: float, t: Timed, base_size: int, base_stored: float) -> str:
    m = row.metrics
    size = int(m["size_bytes"])
    return (f"{label:<9} {row.trial:>5} {row.run:>3} {row.precision:<12} {row.params.get('prune_ratio', 0.0):>5.2f} "
            f"{float(m[key]):8.4f} {100 * (float(m[key]) - base_metric):+6.2f} "
            f"{_first(m):8.4f} {_first(m) / base_stored:6.3f}x "
            f"{t.p50_ms:8.4f} {t.ratio:6.3f}x [{t.ratio_lo:.2f}-{t.ratio_hi:.2f}] "
            f"{size / 1024:8.1f} {size / base_size:6.3f}x")


def _run_rows(study: optuna.Study, run: int) -> list[FrontRow]:
    """Every completed precision of one training run, front or not."""
    done = record.read_all(study, states=(optuna.trial.TrialState.COMPLETE,))
    return [row_of(t) for t in done if t.run == run]


def _first(metrics: dict) -> float:
    """The latency the study measured once, when the run ended (before any re-measurement at the end of tune)."""
    return float(metrics.get("latency_first_ms") or metrics["latency_ms"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=None,
                    help="training runs of the study (default 16); with --storage of an existing study and no --runs: read it only")
    ap.add_argument("--epochs", type=int, default=None, help="default: the registered epochs")
    ap.add_argument("--space", type=Path, default=None, help="TOML file overriding search dimensions, as for effsearch tune")
    ap.add_argument("--objectives", default=OBJECTIVES)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--storage", default=None, help="keep (or read) the study there; default a temporary folder")
    ap.add_argument("--study", default=None, help="study name (default digits-cnn-compression)")
    ap.add_argument("--file", type=Path, default=EXAMPLE)
    ap.add_argument("--max-drop", type=float, default=0.01, help="allowed metric drop, in the metric's units (0.01 = one point)")
    ap.add_argument("--goal-latency", type=float, default=GOAL_LATENCY, help="latency goal, x the dense baseline")
    ap.add_argument("--goal-size", type=float, default=GOAL_SIZE, help="size goal, x the dense baseline (1: none)")
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-candidates", type=int, default=8, help="eligible front points re-measured (lowest stored latency first)")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    name = args.study or f"{load_user_file(args.file).registration.name}-compression"
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')} for the training ranks; timings on a shared 2-core machine")
    with tempfile.TemporaryDirectory() as tmp:
        url = resolve_url(args.storage or f"sqlite:///{tmp}/compression.db")
        storage = open_storage(url, None, None)
        exists = args.storage is not None and name in study_names(storage)
        if exists and args.runs is None:
            study = optuna.load_study(study_name=name, storage=storage)
            print(f"study {name}: read from {args.storage} ({len(study.trials)} trials)")
        else:
            args.runs = args.runs or 16
            study = _run_study(args, url, name, Path(tmp) if args.storage is None else None)
        report(study, args)


def report(study: optuna.Study, args: argparse.Namespace) -> None:
    info = study_info(study)
    key, direction = info.metric_key, info.metric_direction
    base = baseline(study)
    if base is None:
        raise SystemExit("the study has no completed baseline run (its first run); nothing to compare against")
    rows = front_rows(study)
    base_metric = float(base.metrics[key])
    base_size = int(base.metrics["size_bytes"])
    base_stored = _first(base.metrics)
    eligible = [r for r in rows if r.trial != base.trial and _within(r, key, base_metric, args.max_drop, direction)]
    by_stored = sorted(eligible, key=lambda r: _first(r.metrics))
    chosen = by_stored[: args.max_candidates]
    smallest = min(eligible, key=lambda r: int(r.metrics["size_bytes"]), default=None)
    if smallest is not None and smallest not in chosen:
        chosen.append(smallest)
    # The other precisions of the fastest point's training run, front or not: they separate what pruning
    # and what precision bought. Shown for context; the choice is made among the eligible front points.
    context = [r for r in _run_rows(study, by_stored[0].run) if r.trial not in {c.trial for c in chosen}] if by_stored else []
    meta = info.meta
    space = meta.space
    print(f"objectives {', '.join(info.objectives)}; {meta.epochs} epochs per run; "
          f"prune_ratio {space.get('prune_ratio')}; precision {space.get('precision', {}).get('choices')}")
    print(f"front: {len(rows)} points, {len(eligible)} within {100 * args.max_drop:.1f} point(s) of the baseline "
          f"{key} {base_metric:.4f}; re-measuring {len(chosen)} of them, the baseline, and {len(context)} other "
          f"precision(s) of run {by_stored[0].run if by_stored else '-'}")

    paths = {r.trial: Path(r.onnx) for r in [base, *chosen, *context]}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"artifacts are missing (was the study's folder removed?): {', '.join(missing)}")
    uf = load_user_file(meta.user_file or args.file)
    _, val = uf.registration.data()
    sample = stack_dataset(val, limit=1).inputs[:1]
    t0 = time.perf_counter()
    timed = interleaved(paths, base.trial, sample, args.blocks, args.calls, args.warmup, args.threads)
    print(f"re-measured: {args.blocks} interleaved blocks x {args.calls} calls per model after {args.warmup} warm-up calls, "
          f"{args.threads} onnxruntime thread(s), batch 1, in {time.perf_counter() - t0:.1f} s "
          f"(shared 2-core machine, other jobs running: ratios within a block are the robust figure)")
    print()
    print(f"{'':9} {'trial':>5} {'run':>3} {'precision':<12} {'prune':>5} {key[:8]:>8} {'points':>6} "
          f"{'stored':>8} {'ratio':>7} {'now p50':>8} {'ratio':>7} {'[blocks]':11} {'KiB':>8} {'size':>7}")
    print(_fmt_row("baseline", base, key, base_metric, timed[base.trial], base_size, base_stored))
    for r in sorted(chosen, key=lambda r: timed[r.trial].ratio):
        print(_fmt_row("front", r, key, base_metric, timed[r.trial], base_size, base_stored))
    for r in sorted(context, key=lambda r: timed[r.trial].ratio):
        print(_fmt_row("same run", r, key, base_metric, timed[r.trial], base_size, base_stored))
    print("(latency p50 in ms at batch 1; 'stored' = measured once during the study; 'now' = median of the block medians, "
          "its ratio the median of per-block ratios to the baseline, [min-max] over blocks)")
    print()
    if not chosen:
        print(f"no front point is within {100 * args.max_drop:.1f} point(s) of the baseline")
        return
    fastest = min(chosen, key=lambda r: timed[r.trial].ratio)
    stored_fastest = by_stored[0]
    lines = [("lowest latency", fastest)]
    if smallest is not None and smallest.trial != fastest.trial:
        lines.append(("smallest size", smallest))
    for label, r in lines:
        t = timed[r.trial]
        size_ratio = int(r.metrics["size_bytes"]) / base_size
        met = t.ratio <= args.goal_latency and size_ratio <= args.goal_size
        print(f"{label}: trial {r.trial} ({r.precision}, prune {r.params.get('prune_ratio', 0.0):.2f}), "
              f"{key} {float(r.metrics[key]):.4f} ({100 * (float(r.metrics[key]) - base_metric):+.2f} points), "
              f"latency {t.ratio:.3f}x re-measured ({_first(r.metrics) / base_stored:.3f}x stored), "
              f"size {size_ratio:.3f}x -> goal (<= {args.goal_latency}x latency, <= {args.goal_size}x size) {'met' if met else 'NOT met'}")
    t_fast = timed[fastest.trial]
    ties = [r.trial for r in chosen if r.trial != fastest.trial and timed[r.trial].ratio <= t_fast.ratio_hi]
    if ties:
        print(f"within the fastest's block range [{t_fast.ratio_lo:.3f}-{t_fast.ratio_hi:.3f}], so not told apart here: "
              f"trials {', '.join(map(str, ties))}")
    if stored_fastest.trial != fastest.trial:
        print(f"by the stored latencies the fastest would have been trial {stored_fastest.trial} "
              f"({timed[stored_fastest.trial].ratio:.3f}x re-measured)")
    both = [r for r in chosen if timed[r.trial].ratio <= args.goal_latency and int(r.metrics["size_bytes"]) / base_size <= args.goal_size]
    print(f"re-measured points meeting both goals: {', '.join(str(r.trial) for r in both) or 'none'}")


if __name__ == "__main__":
    main()
