"""Per training run: the training loop's time against everything else, on the digits example.

Runs a small study in a temporary folder and prints, per run, training seconds and the rest
(process start, study bookkeeping, export, parity, quantization, measurement), their medians, and
(wall - training) / training. Use --epochs to make runs train for 20 s or more. Then times how long a
rank process takes to be ready: the first (which starts the fork server) and 5 replacements.

    python benchmarks/overhead.py --runs 8 --epochs 6
    python benchmarks/overhead.py --runs 4 --epochs 60 --world-size 2
    python benchmarks/overhead.py --rank-start-only
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from effsearch.objectives import parse_objectives
from effsearch.space import load_space
from effsearch import record
from effsearch.study import TuneSettings, tune
from effsearch.train.pool import hardware_world_sizes
from effsearch.userfile import load_user_file, probe

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits_cnn.py"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--world-size", type=int, nargs="*", default=None, help="fix the world size(s) to compare")
    ap.add_argument("--file", type=Path, default=EXAMPLE)
    ap.add_argument("--rank-start-only", action="store_true", help="only time rank process starts")
    args = ap.parse_args()
    if not args.rank_start_only:
        studies(args)
    rank_start(args.file)


def studies(args: argparse.Namespace) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    uf = load_user_file(args.file)
    info, datasets = probe(uf)
    _, hw = hardware_world_sizes()
    sizes = args.world_size or [1, min(2, hw)]
    print(f"{uf.name}: {args.runs} runs per world size, {args.epochs} epochs, every precision measured")
    for ws in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            space_file = Path(tmp) / "space.toml"
            space_file.write_text(f"world_size = {ws}\n")
            space = load_space(space_file, ws)
            keys, dirs = parse_objectives(None, uf.metric_key, uf.registration.metric_direction)
            settings = TuneSettings(
                study_name=f"overhead-ws{ws}", storage_url=f"sqlite:///{tmp}/b.db", trials=args.runs, space=space,
                objectives=keys, directions=dirs, epochs=args.epochs, artifacts=Path(tmp),
            )
            t0 = time.perf_counter()
            _, summary = tune(settings, uf=uf, probe=info, datasets=datasets)
            total = time.perf_counter() - t0
            leads = [t for t in record.read_all(summary.study) if t.lead and t.record.timing]
            print(f"\nworld_size={ws}  (first run includes starting the rank processes)")
            print(f"{'run':>4} {'wall s':>8} {'train s':>8} {'rest s':>8} {'export':>7} {'quant':>7} {'measure':>8} {'ratio':>7}")
            rest, ratios = [], []
            # A run's wall time is the whole optimize() call: Optuna bookkeeping, process start, training,
            # export, every precision, measurement and recording.
            for i, (t, wall) in enumerate(zip(leads, summary.run_walls)):
                tm = t.record.timing
                r = wall - tm["train_s"]
                rest.append(r)
                ratios.append(r / tm["train_s"])
                print(f"{i + 1:>4} {wall:8.2f} {tm['train_s']:8.2f} {r:8.2f} {tm['export_s']:7.2f} {tm['quantize_s']:7.2f} {tm['measure_s']:8.2f} {r / tm['train_s']:7.3f}")
            print(f"median rest {statistics.median(rest):.2f} s  median ratio (wall-train)/train {statistics.median(ratios):.3f}")
            print(f"median rest after the first run {statistics.median(rest[1:] or rest):.2f} s; study wall {total:.1f} s "
                  f"for {len(leads)} runs; rank process starts {summary.pool_starts}")


def rank_start(file: Path, repeats: int = 5) -> None:
    """Seconds from asking for a rank to its being ready: the first (fork server start) and replacements.

    fork: asked for -> the rank's target runs (the fork server forks, the child unpickles its arguments);
    then, in the rank, importing the file and loading its data (both done by the fork server already, so
    ~0) and connecting to the rendezvous store; ready: asked for -> its ready message read by the driver.
    """
    from multiprocessing import forkserver

    from effsearch.train.pool import WorkerPool

    print(f"\nrank start ({file.name}): fork from the preloaded server, reuse its file and data, connect")
    # The studies above leave the fork server running; alone, the first start starts it.
    server_running = forkserver._forkserver._forkserver_pid is not None
    replacements = []
    for i in range(repeats + 1):
        with WorkerPool(file) as pool:
            t0 = time.perf_counter()
            pool.ensure(1)
            total = time.perf_counter() - t0
            r = pool.ready[0]
            first = "first (server already running)" if server_running else "first (starts the fork server)"
            label = first if i == 0 else f"replacement {i}"
            if i:
                replacements.append(total)
            print(f"  {label:32s} ready in {total:.3f} s  (fork {r['fork_s']:.3f}, import {r['import_s']:.3f}, "
                  f"data {r['data_s']:.3f}, connect {r['connect_s']:.3f})")
    print(f"  median of {repeats} replacements: {statistics.median(replacements):.3f} s")


if __name__ == "__main__":
    main()
