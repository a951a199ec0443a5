"""Where to prune: at the start, or train -> prune -> fine-tune, compared by hypervolume at equal training epochs.

For each seed, two studies on the digits CNN that differ only in the space dimension `prune_when`
("start" or "finetune"; fine-tuning splits the same epochs into dense + fine-tune, so both train the
same number of epochs). Precision is fixed to fp32 and world size to 1 (both orthogonal to placement),
and the objectives are accuracy and FLOPs: both are fixed by the run, not by the load of the machine.
With one seed for sampler and training, and TPE's first 8 trials random, the two studies of a seed
train the same configurations: the comparison is paired, run by run.

Hypervolume is computed in (1 - accuracy, FLOPs / dense FLOPs), both minimised, against a FIXED
reference point (accuracy 0.90, 1.1 x dense FLOPs by default; a second one, accuracy 0.80, checks
that the verdict does not hinge on it). Training seconds per mode are printed to show the time spent.

    python benchmarks/prune_placement.py                     # seeds 0 1 2, 8 runs per study
    python benchmarks/prune_placement.py --seeds 0 1 2 3 4 --runs 12
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume

from effsearch import record
from effsearch.config import TrainConfig
from effsearch.measure.artifact import Measurer
from effsearch.plugins import choose_energy_meter, choose_latency_target
from effsearch.run.pipeline import run_training
from effsearch.space import load_space
from effsearch.study import TuneSettings, tune
from effsearch.train.pool import WorkerPool, available_cores
from effsearch.userfile import load_user_file, probe

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits_cnn.py"
MODES = ("start", "finetune")


@dataclass(frozen=True)
class Run:
    """One completed training run of a study: its configuration and what it measured."""

    number: int
    params: dict
    accuracy: float
    flops: int
    train_s: float


def hv2(points: np.ndarray, ref: np.ndarray) -> float:
    """2-D hypervolume (both minimised) by a staircase sweep: the check on optuna's."""
    volume, ceiling = 0.0, float(ref[1])
    for x, y in points[np.lexsort((points[:, 1], points[:, 0]))]:
        if y < ceiling:
            volume += (float(ref[0]) - x) * (ceiling - y)
            ceiling = y
    return volume


def hypervolume(runs: list[Run], dense_flops: int, ref: tuple[float, float]) -> float:
    """Hypervolume of the runs in (1 - accuracy, flops / dense), against ref = (accuracy, flops fraction)."""
    ref_pt = np.array([1.0 - ref[0], ref[1]])
    pts = np.array([[1.0 - r.accuracy, r.flops / dense_flops] for r in runs], dtype=float).reshape(-1, 2)
    pts = pts[np.all(pts < ref_pt, axis=1)]  # points beyond the reference add nothing
    if len(pts) == 0:
        return 0.0
    value = float(compute_hypervolume(pts, ref_pt))
    check = hv2(pts, ref_pt)
    if not np.isclose(value, check, rtol=1e-9, atol=1e-12):
        raise AssertionError(f"hypervolume mismatch: optuna {value} vs 2-D sweep {check}")
    return value


def study(uf, info, datasets, tmp: Path, seed: int, mode: str, runs: int, epochs: int) -> tuple[list[Run], float]:
    """Run one study with prune_when fixed to `mode`; its completed runs and its wall seconds."""
    space_file = tmp / f"space-{mode}.toml"
    space_file.write_text(f'precision = "fp32"\nworld_size = 1\nprune_when = "{mode}"\n')
    settings = TuneSettings(
        study_name=f"placement-{mode}-seed{seed}", storage_url=f"sqlite:///{tmp}/placement.db", trials=runs,
        space=load_space(space_file, 1), objectives=("accuracy", "flops"), directions=("maximize", "minimize"),
        epochs=epochs, seed=seed, artifacts=tmp,
    )
    t0 = time.perf_counter()
    _, summary = tune(settings, uf=uf, probe=info, datasets=datasets)
    wall = time.perf_counter() - t0
    out = []
    for t in record.read_all(summary.study, states=(optuna.trial.TrialState.COMPLETE,)):
        m = t.metrics
        train_s = float(m["train_s"])
        out.append(Run(t.run, dict(t.params), float(m["accuracy"]), int(m["flops"]), train_s))
    failed = runs - len(out)
    if failed:
        print(f"  seed {seed} {mode}: {failed} run(s) failed")
    return sorted(out, key=lambda r: r.number), wall


def _mean_sd(xs: list[float]) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.5f} +- {sd:.5f}"


def at_ratio(uf, datasets, tmp: Path, seeds: list[int], ratio: float, epochs: int) -> None:
    """Accuracy at one prune ratio with the baseline's training parameters, both placements, per seed."""
    meter = choose_energy_meter(None)
    measurer = Measurer(uf, datasets, meter, choose_latency_target()().providers(), 1, repeats=50)
    base = load_space(None, 1).baseline()
    print(f"\naccuracy at prune ratio {ratio} (baseline training parameters: batch {base['batch_size']}, lr {base['lr']}, "
          f"{base['lr_schedule']}, {epochs} epochs, fp32, world size 1)")
    print(f"{'seed':>4} {'start':>8} {'finetune':>9} {'ft-start':>9} {'train s start':>14} {'train s ft':>11}")
    diffs = []
    with WorkerPool(uf.path) as pool:
        for seed in seeds:
            accs, secs = {}, {}
            for mode in (MODES if seed % 2 == 0 else MODES[::-1]):  # alternate order: drift hits both modes
                cfg = TrainConfig(
                    batch_size=base["batch_size"], lr=base["lr"], lr_schedule=base["lr_schedule"], clip_norm=base["clip_norm"],
                    prune_ratio=ratio, world_size=1, epochs=epochs, seed=seed, prune_when=mode,
                )
                res = run_training(pool, measurer, cfg, ("fp32",), tmp / f"ratio-{mode}-{seed}", threads_per_rank=available_cores())
                pr = res.precisions[0]
                if pr.error:
                    raise SystemExit(f"seed {seed} {mode}: {pr.error}")
                accs[mode], secs[mode] = float(pr.metrics["accuracy"]), res.timing["train_s"]
            diffs.append(accs["finetune"] - accs["start"])
            print(f"{seed:>4} {accs['start']:8.4f} {accs['finetune']:9.4f} {100 * diffs[-1]:+8.2f}p "
                  f"{secs['start']:14.2f} {secs['finetune']:11.2f}")
    print(f"mean finetune - start: {100 * statistics.mean(diffs):+.2f} points")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--runs", type=int, default=8, help="training runs per study (the first is the dense baseline)")
    ap.add_argument("--epochs", type=int, default=None, help="default: the registered epochs")
    ap.add_argument("--ref", type=float, nargs=2, default=[0.90, 1.1], metavar=("ACCURACY", "FLOPS_FRACTION"),
                    help="the fixed reference point: accuracy, and FLOPs as a fraction of the dense model's")
    ap.add_argument("--ref-check", type=float, nargs=2, default=[0.80, 1.1], metavar=("ACCURACY", "FLOPS_FRACTION"))
    ap.add_argument("--at-ratio", type=float, default=0.5, help="also compare accuracy at this prune ratio (0: skip)")
    ap.add_argument("--file", type=Path, default=EXAMPLE)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    uf = load_user_file(args.file)
    info, datasets = probe(uf)
    epochs = args.epochs or uf.registration.epochs
    # The split train_rank makes (effsearch/train/loop.py), for the header.
    frac = next(f.default for f in fields(TrainConfig) if f.name == "finetune_frac")
    ft_epochs = min(epochs - 1, max(1, round(epochs * frac)))
    print(f"{uf.name}: {len(args.seeds)} seeds x 2 placements x {args.runs} runs, {epochs} epochs per run "
          f"(finetune: {epochs - ft_epochs} dense + {ft_epochs} fine-tune), fp32, world size 1, objectives accuracy, flops; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')}; shared 2-core machine, other jobs running")
    t_all = time.perf_counter()
    results: dict[tuple[int, str], list[Run]] = {}
    walls: dict[tuple[int, str], float] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for seed in args.seeds:
            for mode in (MODES if seed % 2 == 0 else MODES[::-1]):  # alternate order: drift hits both modes
                results[seed, mode], walls[seed, mode] = study(uf, info, datasets, tmp, seed, mode, args.runs, epochs)
        dense = {r.flops for runs in results.values() for r in runs if r.params["prune_ratio"] == 0.0}
        if len(dense) != 1:
            raise SystemExit(f"expected one dense FLOPs count, got {sorted(dense)}")
        dense_flops = dense.pop()
        report(args, results, walls, dense_flops)
        if args.at_ratio > 0:
            at_ratio(uf, datasets, tmp, args.seeds, args.at_ratio, epochs)
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")


def report(
    args: argparse.Namespace, results: dict[tuple[int, str], list[Run]], walls: dict[tuple[int, str], float], dense_flops: int
) -> None:
    ref, check = tuple(args.ref), tuple(args.ref_check)
    print(f"\nreference point: accuracy {ref[0]:.2f}, FLOPs {ref[1]:.2f} x dense ({ref[1] * dense_flops:,.0f}); "
          f"check: accuracy {check[0]:.2f}, FLOPs {check[1]:.2f} x dense. Dense FLOPs {dense_flops:,}.")
    print("hypervolume unit: accuracy (0-1) x fraction of dense FLOPs; the dense baseline alone scores "
          "(acc - ref_acc) x (ref_flops - 1)")
    for seed in args.seeds:
        a, b = results[seed, "start"], results[seed, "finetune"]
        same = [x.params for x in a] == [x.params for x in b]
        print(f"\nseed {seed}: configurations identical in both studies: {'yes' if same else 'NO'}")
        print(f"{'run':>4} {'prune':>5} {'batch':>5} {'lr':>8} {'schedule':>9} {'clip':>4} {'MFLOPs':>7} "
              f"{'acc start':>9} {'acc ft':>8} {'ft-start':>8} {'train s st':>10} {'train s ft':>10}")
        by_run = {x.number: x for x in b}
        for x in a:
            y = by_run.get(x.number)
            p = x.params
            acc_ft = f"{y.accuracy:8.4f} {100 * (y.accuracy - x.accuracy):+7.2f}p" if y else f"{'-':>8} {'':>8}"
            ts_ft = f"{y.train_s:10.2f}" if y else f"{'-':>10}"
            print(f"{x.number:>4} {p['prune_ratio']:5.2f} {p['batch_size']:>5} {p['lr']:8.5f} {p['lr_schedule']:>9} "
                  f"{p['clip_norm']:4.1f} {x.flops / 1e6:7.3f} {x.accuracy:9.4f} {acc_ft} {x.train_s:10.2f} {ts_ft}")
    print(f"\n{'seed':>4} {'HV start':>9} {'HV ft':>9} {'winner':>8} {'HVchk st':>9} {'HVchk ft':>9} "
          f"{'train s st':>10} {'train s ft':>10} {'study s st':>10} {'study s ft':>10}")
    hv = {m: [] for m in MODES}
    hvc = {m: [] for m in MODES}
    secs = {m: [] for m in MODES}
    for seed in args.seeds:
        row = {}
        for m in MODES:
            runs = results[seed, m]
            hv[m].append(hypervolume(runs, dense_flops, ref))
            hvc[m].append(hypervolume(runs, dense_flops, check))
            secs[m].append(sum(r.train_s for r in runs))
            row[m] = (hv[m][-1], hvc[m][-1], secs[m][-1], walls[seed, m])
        s, f = row["start"], row["finetune"]
        win = "finetune" if f[0] > s[0] else "start" if s[0] > f[0] else "tie"
        print(f"{seed:>4} {s[0]:9.5f} {f[0]:9.5f} {win:>8} {s[1]:9.5f} {f[1]:9.5f} {s[2]:10.1f} {f[2]:10.1f} {s[3]:10.1f} {f[3]:10.1f}")
    print()
    for m in MODES:
        median_run = statistics.median(r.train_s for s in args.seeds for r in results[s, m])
        print(f"{m:>8}: hypervolume {_mean_sd(hv[m])} (check ref {_mean_sd(hvc[m])}); "
              f"training seconds per study {statistics.mean(secs[m]):.1f} (median run {median_run:.2f} s)")
    wins = sum(f > s for f, s in zip(hv["finetune"], hv["start"]))
    losses = sum(f < s for f, s in zip(hv["finetune"], hv["start"]))
    pruned = []
    for seed in args.seeds:
        ft_runs = {y.number: y for y in results[seed, "finetune"]}
        pruned += [(x, ft_runs[x.number]) for x in results[seed, "start"] if x.params["prune_ratio"] > 0 and x.number in ft_runs]
    d = [y.accuracy - x.accuracy for x, y in pruned]
    t_ratio = [y.train_s / x.train_s for x, y in pruned]
    print(f"finetune wins {wins} of {len(args.seeds)} seeds on hypervolume, start wins {losses}; "
          f"mean hypervolume finetune - start {statistics.mean(hv['finetune']) - statistics.mean(hv['start']):+.5f}")
    if d:
        print(f"paired pruned runs ({len(d)}): accuracy finetune - start mean {100 * statistics.mean(d):+.2f} points, "
              f"median {100 * statistics.median(d):+.2f}; finetune better in {sum(v > 0 for v in d)}, worse in {sum(v < 0 for v in d)}, "
              f"equal in {sum(v == 0 for v in d)}; train seconds finetune/start median {statistics.median(t_ratio):.2f}x")


if __name__ == "__main__":
    main()
