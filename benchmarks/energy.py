"""Repeatability and cost of every usable energy meter on one fixed training configuration.

Trains the same configuration of the digits example --runs times per usable meter (the trial pipeline
itself: rank processes, training, export, fp32 measurement), after --warmup discarded runs (the first
run in a fresh rank process pays one-off costs: thread pools, allocator, first kernels), and prints,
per meter, the training energy
of each run, its coefficient of variation (stdev / mean), the same for the inference energy per sample,
and the meter's read overhead: the median time of a start()+stop() pair, times the reads one trial makes,
as a fraction of the trial's wall time.

    python benchmarks/energy.py                 # 5 runs of 2 epochs, every usable meter
    python benchmarks/energy.py --runs 5 --epochs 6 --meters estimate --threads 1
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

from effsearch.config import TrainConfig
from effsearch.measure.artifact import Measurer
from effsearch.plugins import choose_latency_target, plugins_of_kind
from effsearch.run.pipeline import run_training
from effsearch.train.pool import WorkerPool, available_cores, hardware_world_sizes
from effsearch.userfile import load_user_file, probe

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits_cnn.py"


def read_overhead_s(meter_cls, pairs: int = 200) -> float:
    """Median seconds of one start()+stop() pair on a fresh instance."""
    meter = meter_cls()
    times = []
    for _ in range(pairs):
        t0 = time.perf_counter()
        meter.start()
        meter.stop()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cv(values: list[float]) -> float:
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if len(values) > 1 and mean > 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1, help="runs discarded first (a fresh rank pays one-off costs)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--world-size", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch threads per rank (default: cores / world size)")
    ap.add_argument("--meters", default=None, help="comma-separated meter names (default: every usable one)")
    ap.add_argument("--file", type=Path, default=EXAMPLE)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    wanted = set(args.meters.split(",")) if args.meters else None
    meters = []
    for p in plugins_of_kind("energy_meter"):
        if wanted is not None and p.name not in wanted:
            continue
        if p.unavailable:
            print(f"{p.name}: not usable here ({p.unavailable})")
        else:
            meters.append(p.obj)

    uf = load_user_file(args.file)
    _, datasets = probe(uf)
    device, _ = hardware_world_sizes()
    threads = args.threads or (max(1, available_cores() // args.world_size) if device == "cpu" else 1)
    providers = choose_latency_target()().providers()
    config = TrainConfig(
        batch_size=64, lr=3e-3, lr_schedule="cosine", clip_norm=0.0, prune_ratio=0.0,
        world_size=args.world_size, epochs=args.epochs, seed=0,
    )
    print(f"{uf.name}: {args.runs} runs (after {args.warmup} discarded) x {args.epochs} epochs, world size {args.world_size} on {device}, "
          f"{threads} thread(s) per rank; fp32 measured with {providers[0]}")

    with WorkerPool(uf.path) as pool, tempfile.TemporaryDirectory() as tmp:
        pool.ensure(args.world_size)  # process start is not part of any run
        for meter_cls in meters:
            measurer = Measurer(uf, datasets, meter_cls, providers)
            train_j, infer_mj, walls, train_s = [], [], [], []
            for i in range(-args.warmup, args.runs):
                result = run_training(
                    pool, measurer, config, ("fp32",), Path(tmp) / f"{meter_cls.name}-{i}",
                    device=device, threads_per_rank=threads,
                )
                fp32 = result.precisions[0]
                if fp32.error:
                    raise SystemExit(f"run {i + 1} failed: {fp32.error}")
                if i < 0:
                    continue
                train_j.append(result.energy_j)
                infer_mj.append(fp32.metrics["infer_energy_mj"])
                walls.append(result.timing["wall_s"])
                train_s.append(result.timing["train_s"])
            pair_s = read_overhead_s(meter_cls)
            # Reads per trial: one per rank (process scope) or one (machine scope) for training, one for inference.
            reads = (args.world_size if meter_cls.scope == "process" else 1) + 1
            trial_s = statistics.median(walls)
            source = meter_cls.name if meter_cls.measured else "estimate"
            print(f"\n{meter_cls.name} (energy_source {source}, {meter_cls.scope} scope)")
            print("  training J      : " + "  ".join(f"{j:8.3f}" for j in train_j) + f"   CV {cv(train_j):.3f}")
            print("  inference mJ/smp: " + "  ".join(f"{j:8.5f}" for j in infer_mj) + f"   CV {cv(infer_mj):.3f}")
            print("  train s         : " + "  ".join(f"{s:8.3f}" for s in train_s) + f"   CV {cv(train_s):.3f}")
            print(f"  read overhead   : {pair_s * 1e6:.1f} us per start()+stop() (median of 200); x{reads} reads "
                  f"per trial = {reads * pair_s / trial_s:.2e} of the trial's {trial_s:.2f} s (median wall)")


if __name__ == "__main__":
    main()
