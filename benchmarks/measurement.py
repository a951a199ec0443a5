"""How far the latency figures can be trusted: rankings that survive a second process and a loaded core.

On the digits example: a short study gives trained artifacts with their once-only latencies (measured
when each run ended). Eight of them whose latencies differ pairwise by at least 10 % (chosen on a first
interleaved pass), with the dense baseline as reference, are then measured by the re-measurement protocol
(measure/blocks.py) in two separate processes 30 s apart, while another process keeps one core busy.
Printed: each artifact's ratio to the baseline in both processes, the coefficient of variation of each
ratio over blocks, Kendall's tau between the two rankings (goal >= 0.9, CV <= 5 %), the same tau for the
once-only figures stored by `tune`, and what re-measuring a front of 15 points costs (goal <= 5 s).

    python benchmarks/measurement.py            # a 14-run study of 1 epoch, then the measurements
    python benchmarks/measurement.py --json     # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState
from scipy.stats import kendalltau

from effsearch import record
from effsearch.measure.blocks import PROTOCOL, measure_blocks

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits_cnn.py"
SAMPLE_SHAPE = (1, 1, 8, 8)


def say(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def _busy() -> None:
    while True:
        pass


def _measure(paths: dict[int, str], reference: int, out: str) -> None:
    """One measuring process: the protocol's figures and each ratio's per-block values, to a JSON file."""
    sample = np.random.default_rng(0).random(SAMPLE_SHAPE, dtype=np.float32)
    protocol = {**PROTOCOL, "min_blocks": 15, "max_blocks": 40, "max_s": 20.0}
    timed = measure_blocks({n: Path(p) for n, p in paths.items()}, reference, sample, protocol=protocol)
    Path(out).write_text(json.dumps({str(n): t.to_dict() for n, t in timed.items()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=14)
    ap.add_argument("--gap", type=float, default=30.0, help="seconds between the two measuring processes")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        r = subprocess.run([sys.executable, "-m", "effsearch", "tune", str(EXAMPLE), "--trials", str(args.runs), "--epochs", "1"],
                           cwd=tmp, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(r.stderr)
        study = optuna.load_study(study_name="digits-cnn", storage=f"sqlite:///{tmp / 'studies' / 'effsearch.db'}")
        done = [t for t in record.read_all(study, states=(TrialState.COMPLETE,)) if t.onnx]
        base = next(t for t in done if t.baseline)
        sample = np.random.default_rng(0).random(SAMPLE_SHAPE, dtype=np.float32)
        t0 = time.perf_counter()
        first = measure_blocks({t.number: Path(t.onnx) for t in done}, base.number, sample)
        pool_s = time.perf_counter() - t0
        chosen: list[int] = []
        for n in sorted((n for n in first if n != base.number), key=lambda n: first[n].ratio):
            if all(abs(first[n].ratio / first[m].ratio - 1) >= 0.10 for m in chosen) and len(chosen) < 8:
                chosen.append(n)
        say(f"study of {args.runs} runs: {len(done)} trials; chose {len(chosen)} whose latencies differ pairwise by >= 10 %")
        paths = {n: str(study.trials[n].user_attrs["onnx"]) for n in [base.number, *chosen]}
        # Re-measuring a front of 15 points: 15 artifacts and the baseline timed together.
        front15 = {t.number: Path(t.onnx) for t in done[:16]}
        t0 = time.perf_counter()
        measure_blocks(front15, base.number, sample)
        front15_s = time.perf_counter() - t0
        load = mp.get_context("spawn").Process(target=_busy, daemon=True)
        load.start()
        try:
            outs = []
            for i in range(2):
                if i:
                    time.sleep(args.gap)
                out = tmp / f"measure-{i}.json"
                proc = mp.get_context("spawn").Process(target=_measure, args=(paths, base.number, str(out)))
                proc.start()
                proc.join()
                outs.append({int(k): v for k, v in json.loads(out.read_text()).items()})
        finally:
            load.kill()
    a = [outs[0][n]["ratio"] for n in chosen]
    b = [outs[1][n]["ratio"] for n in chosen]
    stored = [study.trials[n].user_attrs["metrics"]["latency_ms"] / base.metrics["latency_ms"] for n in chosen]
    tau = float(kendalltau(a, b).statistic)
    tau_stored = float(kendalltau(stored, a).statistic)
    cvs = [o[n]["ratio_cv"] for o in outs for n in chosen]
    say(f"{'trial':>6} {'stored x':>9} {'process 1 x':>12} {'process 2 x':>12} {'CV 1':>6} {'CV 2':>6}")
    for n, s, x, y in zip(chosen, stored, a, b):
        c1, c2 = outs[0][n]["ratio_cv"], outs[1][n]["ratio_cv"]
        say(f"{n:>6} {s:9.3f} {x:12.3f} {y:12.3f} {100 * c1:5.1f}% {100 * c2:5.1f}%")
    say(f"Kendall tau between the two processes {tau:.3f} (goal >= 0.9); worst CV of a ratio {100 * max(cvs):.1f}% (goal <= 5%)")
    say(f"Kendall tau between the once-only stored figures and process 1: {tau_stored:.3f}")
    say(f"re-measuring 16 artifacts (a front of 15 and the baseline) took {front15_s:.2f} s (goal <= 5 s); "
        f"all {len(done)} took {pool_s:.2f} s")
    if args.json:
        print(json.dumps({"measurement": {
            "kendall_tau": tau, "kendall_tau_stored": tau_stored, "worst_cv": max(cvs), "front15_s": front15_s,
            "trials": chosen, "ratios": [a, b], "stored_ratios": stored,
        }}, indent=2))


if __name__ == "__main__":
    main()
