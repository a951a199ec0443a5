"""Knowledge distillation: how much pruned accuracy the unpruned model's soft targets give back, and at what cost.

A model that arrives trained (examples/mobilenet_digits.py by default) is pruned at `--prune` (0.7) and
fine-tuned for the same epochs twice per seed: without distillation and with it (the teacher is the
model as given, unpruned; weight `--weight`, temperature 4), everything else at the fine-tuning
baseline (batch 64, lr 3e-4, cosine, fp32, world size 1). Accuracy is the fp32 ONNX artifact's on the
validation set, as in a study; train_s covers the training steps, the teacher's forward passes included.
The two arms of a seed run back to back, their order alternating with the seed, so drift hits both.

    python benchmarks/distillation.py                        # seeds 0 1 2, prune 0.7, weight 0.5
    python benchmarks/distillation.py --weight 0.75 --epochs 5 --json
    python benchmarks/distillation.py --file examples/mnist1d_cnn_trained.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import optuna

from effsearch.config import TrainConfig
from effsearch.measure.artifact import Measurer
from effsearch.plugins import choose_energy_meter, choose_latency_target
from effsearch.run.pipeline import run_training
from effsearch.run.reference import run_reference
from effsearch.space import load_space
from effsearch.train.pool import WorkerPool, available_cores
from effsearch.userfile import load_user_file, probe

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mobilenet_digits.py"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=EXAMPLE, help="a user file registered with trained=True")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--prune", type=float, default=0.7)
    ap.add_argument("--weight", type=float, default=0.5, help="the distillation weight (0 < w < 1)")
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--epochs", type=int, default=None, help="default: the registered epochs")
    ap.add_argument("--lr", type=float, default=None, help="default: the fine-tuning baseline's (3e-4)")
    ap.add_argument("--json", action="store_true", help="also print the figures as one JSON object")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    uf = load_user_file(args.file)
    if not uf.registration.trained:
        raise SystemExit(f"{args.file}: distillation needs a model that arrives trained; register it with trained=True")
    info, datasets = probe(uf)
    epochs = args.epochs or uf.registration.epochs
    base = load_space(None, 1, trained=True).baseline()
    measurer = Measurer(uf, datasets, choose_energy_meter(None), choose_latency_target()().providers(), 1, repeats=50)
    threads = available_cores()
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name, WorkerPool(uf.path) as pool:
        tmp = Path(tmp_name)
        plain = TrainConfig(
            batch_size=base["batch_size"], lr=args.lr or base["lr"], lr_schedule=base["lr_schedule"], clip_norm=base["clip_norm"],
            prune_ratio=args.prune, world_size=1, epochs=epochs, seed=0, warmup_frac=base["warmup_frac"],
        )
        given = run_reference(uf, datasets, measurer, plain, ("fp32",), tmp / "reference").precisions[0]
        if given.error:
            raise SystemExit(f"the model as given: {given.error}")
        reference = float(given.metrics[uf.metric_key])
        print(f"{uf.name}: the model as given {uf.metric_key} {reference:.4f}; pruned {args.prune}, {epochs} epochs of "
              f"fine-tuning (batch {plain.batch_size}, lr {plain.lr:g}, {plain.lr_schedule}), fp32, world size 1, "
              f"{threads} threads; distillation weight {args.weight}, temperature {args.temperature}")
        print(f"{'seed':>4} {'without':>8} {'with':>8} {'recovered':>10} {'drop w/o':>9} {'train s w/o':>11} {'train s with':>12} {'time x':>7}")
        rows = []
        for seed in args.seeds:
            arms = {"without": replace(plain, seed=seed), "with": replace(plain, seed=seed, distill=args.weight, distill_temperature=args.temperature)}
            got: dict[str, tuple[float, float]] = {}
            for name in (("without", "with") if seed % 2 == 0 else ("with", "without")):
                res = run_training(pool, measurer, arms[name], ("fp32",), tmp / f"{name}-{seed}", threads_per_rank=threads)
                pr = res.precisions[0]
                if pr.error:
                    raise SystemExit(f"seed {seed}, {name} distillation: {pr.error}")
                got[name] = (float(pr.metrics[uf.metric_key]), res.timing["train_s"])
            (acc0, s0), (acc1, s1) = got["without"], got["with"]
            rows.append({"seed": seed, "without": acc0, "with": acc1, "recovered": acc1 - acc0,
                         "drop_without": reference - acc0, "train_s_without": s0, "train_s_with": s1, "time_ratio": s1 / s0})
            print(f"{seed:>4} {acc0:8.4f} {acc1:8.4f} {100 * (acc1 - acc0):+9.2f}p {100 * (reference - acc0):8.2f}p "
                  f"{s0:11.2f} {s1:12.2f} {s1 / s0:6.2f}x")
    recovered = statistics.median(r["recovered"] for r in rows)
    ratio = statistics.median(r["time_ratio"] for r in rows)
    lost = min(r["drop_without"] for r in rows)
    print(f"median recovered {100 * recovered:+.2f} points; median training time with / without {ratio:.2f}x; "
          f"fine-tuning without distillation lost at least {100 * lost:.2f} points against the model as given")
    if lost < 0.01:
        print("note: fine-tuning without distillation lost under 1 point in some seed; raise --prune or lower --epochs")
    print(f"total {time.perf_counter() - t_all:.0f} s")
    if args.json:
        print(json.dumps({"distillation": {
            "reference": reference, "prune_ratio": args.prune, "epochs": epochs, "weight": args.weight,
            "temperature": args.temperature, "recovered_median": recovered, "time_ratio_median": ratio, "seeds": rows,
        }}))


if __name__ == "__main__":
    main()
