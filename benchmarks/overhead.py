"""Per training run: the training loop's time against everything else, on the digits example.

Runs small studies in a temporary folder, with early stopping on and off, and prints, per run, training
seconds and the rest (process start, study bookkeeping, export, parity, quantization, measurement),
their medians, and (wall - training) / training. A run stopped early exports and measures nothing: its
rest is counted apart from the measured runs'. Use --epochs to make runs train for 20 s or more. Then
times how long a rank process takes to be ready: the first (which starts the fork server) and 5
replacements.

    python benchmarks/overhead.py --runs 8 --epochs 6
    python benchmarks/overhead.py --runs 4 --epochs 60 --world-size 2 --early-stop off
    python benchmarks/overhead.py --rank-start-only
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna

from effsearch.objectives import parse_objectives
from effsearch.space import load_space
from effsearch import record
from effsearch.study import TuneSettings, tune
from effsearch.train.pool import hardware_world_sizes
from effsearch.userfile import load_user_file, probe

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits_cnn.py"
ARMS = {"on": (True,), "off": (False,), "both": (True, False)}
# What a measured run does after training; a run stopped early does none of it.
PHASES = ("export_s", "quantize_s", "measure_s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--world-size", type=int, nargs="*", default=None, help="fix the world size(s) to compare")
    ap.add_argument("--early-stop", choices=tuple(ARMS), default="both", help="studies with early stopping on, off, or both")
    ap.add_argument("--file", type=Path, default=EXAMPLE)
    ap.add_argument("--rank-start-only", action="store_true", help="only time rank process starts")
    args = ap.parse_args()
    if not args.rank_start_only:
        studies(args)
    rank_start(args.file)


@dataclass(frozen=True)
class RunRow:
    """One training run's wall seconds against its training; phases: export, quantize, measure (None if stopped)."""

    wall_s: float
    train_s: float
    phases: tuple[float, float, float] | None

    @property
    def stopped(self) -> bool:
        return self.phases is None

    @property
    def rest_s(self) -> float:
        return self.wall_s - self.train_s

    @property
    def ratio(self) -> float | None:
        return self.rest_s / self.train_s if self.train_s > 0 else None


def run_rows(leads: list[record.RecordedTrial], walls: tuple[float, ...]) -> list[RunRow]:
    """The runs of one worker's study: its lead trials in start order, each with its optimize() call's wall.

    Every call made one lead trial, so the two pair in order; a run that recorded no timing (it failed
    before training ended) is left out after pairing, not before, so that no run takes another's wall.
    """
    rows = []
    for t, wall in zip(leads, walls):
        timing = t.record.timing
        if not timing:
            continue
        phases = tuple(timing[k] for k in PHASES) if t.record.stopped is None else None
        rows.append(RunRow(wall, timing["train_s"], phases))
    return rows


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s" if values else "-"


def print_runs(rows: list[RunRow]) -> dict[str, str]:
    """Print one study's runs and its medians; returns the medians for the closing table."""
    print(f"{'run':>4} {'wall s':>8} {'train s':>8} {'rest s':>8} {'export':>7} {'quant':>7} {'measure':>8} {'ratio':>7}")
    for i, r in enumerate(rows):
        phases = " ".join(f"{v:{w}.2f}" for v, w in zip(r.phases, (7, 7, 8))) if r.phases else f"{'stopped early':>24}"
        ratio = f"{r.ratio:7.3f}" if r.ratio is not None else f"{'-':>7}"
        print(f"{i + 1:>4} {r.wall_s:8.2f} {r.train_s:8.2f} {r.rest_s:8.2f} {phases} {ratio}")
    measured = [r.rest_s for r in rows if not r.stopped]
    stopped = [r.rest_s for r in rows if r.stopped]
    ratios = [r.ratio for r in rows if r.ratio is not None]
    medians = {
        "measured": f"{_median(measured)} ({len(measured)})",
        "after first": _median([r.rest_s for r in rows[1:] if not r.stopped] or measured),
        "stopped": f"{_median(stopped)} ({len(stopped)})",
        "ratio": f"{statistics.median(ratios):.3f}" if ratios else "-",
    }
    print(f"median rest: measured runs {medians['measured']}, after the first {medians['after first']}, "
          f"stopped runs {medians['stopped']}; median ratio (wall-train)/train {medians['ratio']}")
    return medians


def studies(args: argparse.Namespace) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    uf = load_user_file(args.file)
    info, datasets = probe(uf)
    _, hw = hardware_world_sizes()
    sizes = args.world_size or [1, min(2, hw)]
    arms = ARMS[args.early_stop]
    print(f"{uf.name}: {args.runs} runs per world size and arm, {args.epochs} epochs, every precision measured")
    table = []
    for ws in sizes:
        for early_stop in arms:
            label = f"world_size={ws}, early stopping {'on' if early_stop else 'off'}"
            with tempfile.TemporaryDirectory() as tmp:
                space_file = Path(tmp) / "space.toml"
                space_file.write_text(f"world_size = {ws}\n")
                space = load_space(space_file, ws)
                keys, dirs = parse_objectives(None, uf.metric_key, uf.registration.metric_direction)
                settings = TuneSettings(
                    study_name=f"overhead-ws{ws}-{'stop' if early_stop else 'full'}", storage_url=f"sqlite:///{tmp}/b.db",
                    trials=args.runs, space=space, objectives=keys, directions=dirs, epochs=args.epochs, artifacts=Path(tmp),
                    early_stop=early_stop,
                )
                t0 = time.perf_counter()
                _, summary = tune(settings, uf=uf, probe=info, datasets=datasets)
                total = time.perf_counter() - t0
                # A run's wall time is the whole optimize() call: Optuna bookkeeping, process start,
                # training, export, every precision, measurement and recording.
                leads = [t for t in record.read_all(summary.study) if t.lead]
                rows = run_rows(leads, summary.run_walls)
                print(f"\n{label}  (first run includes starting the rank processes)")
                medians = print_runs(rows)
                print(f"study wall {total:.1f} s for {len(rows)} runs; rank process starts {summary.pool_starts}")
                table.append((label, medians))
    print(f"\n{'study':<38} {'rest, measured runs (n)':>24} {'after first':>12} {'rest, stopped runs (n)':>23} {'ratio':>7}")
    for label, m in table:
        print(f"{label:<38} {m['measured']:>24} {m['after first']:>12} {m['stopped']:>23} {m['ratio']:>7}")


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
