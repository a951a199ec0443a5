"""Train and measure a grid of configurations of one example model once, by the real pipeline: the table.

The grid (GRID: prune ratio x batch size x lr x schedule x clip norm, 576 configurations of
examples/breast_cancer_mlp.py, 1 epoch) is enqueued, 24 configurations to a study, each study's dense
baseline first, and run by `effsearch.study.tune` as `effsearch tune` runs it (world size 1; the lead
fp32 and its fp16, int8_dynamic and int8_static trials recorded). One CSV row per configuration and
precision: the study's default objectives (metric, latency_ms, energy_j), size_bytes and the untrained
figures the trial records. replay.py replays samplers on it.

    nice -n 10 python benchmarks/tabular/make_table.py                  # 600 runs, 40 min on 2 busy cores
    python benchmarks/tabular/make_table.py --limit 4 --out /tmp/t.csv  # a quick look
"""

from __future__ import annotations

import argparse
import csv
import itertools
import logging
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from effsearch import record
from effsearch.objectives import parse_objectives
from effsearch.space import load_space
from effsearch.study import Instruments, TuneSettings, open_study, tune
from effsearch.userfile import load_user_file, probe

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent.parent / "examples" / "breast_cancer_mlp.py"
TABLE = HERE / "breast_cancer_mlp.csv"

# The grid: every value lies in the default space (prune_ratio on its 0.05 step, lr in 3e-4..3e-2).
GRID = {
    "prune_ratio": (0.0, 0.15, 0.3, 0.45, 0.6, 0.75),
    "batch_size": (16, 32, 64, 128),
    "lr": (3e-4, 1e-3, 3e-3, 1e-2),
    "lr_schedule": ("constant", "cosine", "onecycle"),
    "clip_norm": (0.0, 1.0),
}
PRECISIONS = ("fp32", "fp16", "int8_dynamic", "int8_static")
CHUNK = 24  # configurations per study
UNTRAINED = ("latency_ms", "latency_ratio", "size_bytes", "flops", "param_count")


def grid() -> list[dict[str, object]]:
    """Every configuration of GRID, in a fixed order."""
    return [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]


def key(params: dict[str, object]) -> tuple[object, ...]:
    return tuple(float(params[name]) if name != "lr_schedule" else params[name] for name in GRID)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=EXAMPLE)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="only the first N configurations of the grid")
    ap.add_argument("--out", type=Path, default=TABLE)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.basicConfig(level=logging.WARNING)

    uf = load_user_file(args.file)
    info, datasets = probe(uf)
    space = load_space(None, 1).fixed("world_size", 1).fixed("train_precision", "fp32")
    keys, dirs = parse_objectives(None, uf.metric_key, uf.registration.metric_direction)
    configs = grid()[: args.limit]
    order = {key(c): i for i, c in enumerate(configs)}
    rows: list[dict[str, object]] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:

        def run(name: str, chunk: list[dict[str, object]]) -> list[dict[str, object]]:
            """Train and measure `chunk` in a study of its own; the configurations that did not complete."""
            settings = TuneSettings(
                study_name=name, storage_url=f"sqlite:///{tmp}/table.db", trials=len(chunk) + 1, space=space,
                objectives=keys, directions=dirs, epochs=args.epochs, seed=0, artifacts=Path(tmp),
            )
            # Create the study (with its queued dense baseline), queue the chunk behind it, then run them all.
            study = open_study(settings, uf=uf, probe=info, tools=Instruments.choose())
            for params in chunk:
                study.enqueue_trial({**params, "precision": "fp32", "world_size": 1})
            _, summary = tune(settings, uf=uf, probe=info, datasets=datasets)
            got, missing = table_rows(summary.study, keys[0], chunk)
            rows.extend(got)
            return missing

        # One study per chunk of the grid: a study's bookkeeping reads all its trials, so one study of
        # the whole grid (2,300 trials) spends more per run on reading them than on the run itself.
        missing = []
        for i in range(0, len(configs), CHUNK):
            missing += run(f"table-{i // CHUNK}", configs[i : i + CHUNK])
            done = min(i + CHUNK, len(configs))
            print(f"{done}/{len(configs)} configurations, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        if missing:  # a run that failed is tried once more
            print(f"{len(missing)} configurations did not complete; running them again", file=sys.stderr)
            missing = run("table-again", missing)
    rows.sort(key=lambda r: order[key(r)] * len(PRECISIONS) + PRECISIONS.index(str(r["precision"])))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} rows ({len(rows) // len(PRECISIONS)} configurations) in {time.perf_counter() - t0:.0f} s -> {args.out}",
          file=sys.stderr)
    if missing:
        raise SystemExit(f"{len(missing)} configurations failed twice and are not in the table: {missing}")


def table_rows(
    study: optuna.Study, metric: str, configs: list[dict[str, object]]
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """One row per configuration of `configs` and precision, and the configurations without every precision.

    The dense baseline's run stands in for its grid twin where the twin did not complete.
    """
    wanted = {key(c): c for c in configs}
    found: dict[tuple[object, ...], dict[str, record.RecordedTrial]] = {}
    for t in record.read_all(study, states=(TrialState.COMPLETE,)):
        k = key(t.params)
        if k in wanted and not (t.baseline and t.params["precision"] in found.get(k, {})):
            found.setdefault(k, {})[t.params["precision"]] = t
    rows, missing = [], []
    for k, params in wanted.items():
        by_precision = found.get(k, {})
        if any(p not in by_precision for p in PRECISIONS):
            missing.append(params)
            continue
        for precision in PRECISIONS:
            t = by_precision[precision]
            m, u = t.metrics, t.record.untrained or {}
            rows.append({
                **params, "precision": precision, "metric": m[metric], "latency_ms": m["latency_ms"],
                "energy_j": m["energy_j"], "size_bytes": m["size_bytes"],
                **{f"untrained_{name}": u.get(name) for name in UNTRAINED},
            })
    return [{k: compact(v) for k, v in r.items()} for r in rows], missing


def compact(value: object) -> object:
    """A measured float to 6 significant digits (far finer than its noise): the table stays small."""
    return float(f"{value:.6g}") if isinstance(value, float) else value


if __name__ == "__main__":
    main()
