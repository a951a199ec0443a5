"""Train a grid of configurations of the MNIST-1D CNN by the real pipeline, with curves: the table.

The grid (GRID: prune ratio x batch size x lr x schedule x clip norm, 324 configurations of
examples/mnist1d_cnn.py, EPOCHS epochs each) is enqueued, 24 configurations to a study, and run by
`effsearch.study.tune` as `effsearch tune` runs it (world size 1, fp32 training, no distillation, early
stopping off so that every run trains all its epochs). Each run records one trial per precision of the
default choices. One CSV row per configuration and precision: the torch validation metric, seconds and
energy after every epoch (`curve`, JSON, on the fp32 row: the run's lead trial), the precision's final
metric, size, FLOPs and parameter count, its untrained figures, the pruning achieved and the graph it built
(`graph`: p<parameter count> of the pruned model; at channel multiple 16 the 6 prune ratios build 6 graphs,
with 128, 96, 80, 64, 48 and 32 channels).

The rows of a configuration are appended as soon as its run ends; a restart skips the configurations in the
CSV, so an interruption loses the run in flight (and, for the rest of its chunk, a new study's baseline
run where the baseline's configuration is no longer wanted). Latencies are not taken while the table
trains: one ONNX file per distinct (graph, precision) is kept under --work, and `--latency` times them
all together in one process, interleaved (measure_blocks, as `effsearch remeasure` does), into
<out>_latency.csv, joined to the table on (graph, precision). The build's cost goes to <out>.meta.json.

    nohup nice -n 10 python benchmarks/tabular/make_mnist1d_table.py > /tmp/mnist1d_table.log 2>&1 &
    python benchmarks/tabular/make_mnist1d_table.py --latency          # once the grid is done
    python benchmarks/tabular/make_mnist1d_table.py --seed-check       # 8 configurations x 2 seeds
    python benchmarks/tabular/make_mnist1d_table.py --limit 2 --epochs 1 --out /tmp/t.csv  # a quick look
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import logging
import os
import platform
import shutil
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from effsearch import record
from effsearch.compress.prune.common import channel_multiple
from effsearch.host import cpu_model
from effsearch.measure.blocks import PROTOCOL, measure_blocks
from effsearch.objectives import parse_objectives
from effsearch.space import PRECISIONS, load_space
from effsearch.study import Instruments, TuneSettings, open_study, tune
from effsearch.userfile import load_user_file, probe

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent.parent / "examples" / "mnist1d_cnn.py"
TABLE = HERE / "mnist1d_cnn.csv"
WORK = HERE.parent.parent / "studies" / "mnist1d_cnn_table"  # studies and kept ONNX files: gitignored

# The grid, inside the default space. Prune ratios: one per graph the example's 128 channels build once
# kept counts are rounded to 16 (128, 96, 80, 64, 48, 32 channels; 0.1's 112 was left out for the build's time,
# 18 s per configuration here); lr on a half-decade grid.
GRID = {
    "prune_ratio": (0.0, 0.25, 0.4, 0.5, 0.6, 0.75),
    "batch_size": (32, 64, 128),
    "lr": (1e-3, 3e-3, 1e-2),
    "lr_schedule": ("constant", "cosine", "onecycle"),
    "clip_norm": (0.0, 1.0),
}
CHUNK = 24  # configurations per study: a study's bookkeeping reads all its trials
UNTRAINED = ("latency_ms", "latency_ratio", "size_bytes", "flops", "param_count")
FIGURES = ("size_bytes", "flops", "param_count")
COLUMNS = (
    *GRID, "precision", "seed", "graph", "prune_achieved", "metric", "energy_j", "energy_source", "train_s",
    *FIGURES, *(f"untrained_{name}" for name in UNTRAINED), "curve",
)
# The latency phase: measure_blocks' protocol, with room for every (graph, precision) at once.
LATENCY_PROTOCOL = {**PROTOCOL, "max_blocks": 60, "max_s": 120.0}
SEED_CHECK = 8  # configurations, spread over the grid, each trained with two seeds
# Epochs per run: at the example's 4, two seeds of a configuration differed by a median 0.0145 in accuracy
# over the SEED_CHECK configurations; at 8, by 0.009 (--seed-check --epochs 8), within the 0.01 asked.
EPOCHS = 8


def grid() -> list[dict[str, Any]]:
    """Every configuration of GRID, in a fixed order."""
    return [dict(zip(GRID, values)) for values in itertools.product(*GRID.values())]


def key(params: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(str(params[name]) if name == "lr_schedule" else float(params[name]) for name in GRID)


class Table:
    """The CSV, appended one configuration (all its precisions) at a time; its cost in <out>.meta.json."""

    def __init__(self, path: Path):
        self.path = path
        self.meta_path = path.with_suffix(".meta.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_torn_line()

    def _drop_torn_line(self) -> None:
        """A build killed mid-write leaves a last line without its newline: cut it off (its run is redone)."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):
            self.path.write_bytes(data[: data.rfind(b"\n") + 1])

    def rows(self) -> list[dict[str, str]]:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != COLUMNS:
                raise SystemExit(f"{self.path} has other columns than this script writes; pass another --out")
            return list(reader)

    def done(self) -> set[tuple[Any, ...]]:
        """The configurations with a row for every precision."""
        have: dict[tuple[Any, ...], set[str]] = {}
        for r in self.rows():
            have.setdefault(key(r), set()).add(r["precision"])
        return {k for k, p in have.items() if p >= set(PRECISIONS)}

    def append(self, rows: list[dict[str, Any]]) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            if new:
                w.writeheader()
            w.writerows(rows)
            f.flush()
            os.fsync(f.fileno())

    def meta(self) -> dict[str, Any]:
        return json.loads(self.meta_path.read_text()) if self.meta_path.exists() else {}

    def update_meta(self, **values: Any) -> None:
        meta = {**self.meta(), **values}
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.meta_path)


class Builder:
    """Runs configurations in studies of CHUNK, as `effsearch tune` runs them, and hands back their rows."""

    def __init__(self, args: argparse.Namespace):
        self.uf = load_user_file(args.file)
        self.info, self.datasets = probe(self.uf)
        self.space = load_space(None, 1).fixed("world_size", 1).fixed("train_precision", "fp32").fixed("distill", 0.0)
        self.keys, self.dirs = parse_objectives(None, self.uf.metric_key, self.uf.registration.metric_direction)
        self.epochs = args.epochs or int(self.uf.registration.epochs)
        self.work = Path(args.work)
        self.onnx = self.work / "onnx"
        self.onnx.mkdir(parents=True, exist_ok=True)

    def run(self, configs: list[dict[str, Any]], *, seed: int, tag: str, on_row) -> list[dict[str, Any]]:
        """Train `configs` (seed `seed`), calling on_row(rows) as each completes; the ones that did not complete."""
        missing: list[dict[str, Any]] = []
        for i in range(0, len(configs), CHUNK):
            missing += self._chunk(configs[i : i + CHUNK], seed=seed, name=f"{tag}-{time.strftime('%Y%m%d%H%M%S')}-{i // CHUNK}",
                                   on_row=on_row)
        return missing

    def _chunk(self, chunk: list[dict[str, Any]], *, seed: int, name: str, on_row) -> list[dict[str, Any]]:
        settings = TuneSettings(
            study_name=name, storage_url=f"sqlite:///{self.work}/studies.db", trials=len(chunk) + 1, space=self.space,
            objectives=self.keys, directions=self.dirs, epochs=self.epochs, seed=seed, artifacts=self.work / "artifacts",
            early_stop=False,  # every run trains all its epochs and records its whole curve
        )
        study = open_study(settings, uf=self.uf, probe=self.info, tools=Instruments.choose())
        for params in chunk:
            study.enqueue_trial({**params, "precision": "fp32", "world_size": 1})
        wanted = {key(c): c for c in chunk}
        written: set[tuple[Any, ...]] = set()

        def collect(study: optuna.Study) -> bool:
            """After each run: the rows of every configuration of the chunk that has all its precisions."""
            for k, rows in table_rows(study, self.uf.metric_key, wanted, seed).items():
                if k not in written:
                    written.add(k)
                    self._keep_onnx(rows)
                    on_row([{c: compact(r.get(c)) for c in COLUMNS} for r in rows])
            return False

        tuner, summary = tune(settings, uf=self.uf, probe=self.info, datasets=self.datasets, until=collect)
        collect(summary.study)
        shutil.rmtree(tuner.s.artifact_dir, ignore_errors=True)  # the kept ONNX files were copied out
        return [c for k, c in wanted.items() if k not in written]

    def _keep_onnx(self, rows: list[dict[str, Any]]) -> None:
        """One ONNX file per (graph, precision), for the latency phase."""
        for r in rows:
            target = self.onnx / f"{r['graph']}-{r['precision']}.onnx"
            if not target.exists() and r.get("_onnx") and Path(r["_onnx"]).is_file():
                shutil.copyfile(r["_onnx"], target.with_suffix(".partial"))
                os.replace(target.with_suffix(".partial"), target)


def table_rows(
    study: optuna.Study, metric: str, wanted: dict[tuple[Any, ...], dict[str, Any]], seed: int
) -> dict[tuple[Any, ...], list[dict[str, Any]]]:
    """The rows (one per precision) of each configuration of `wanted` whose run completed every precision.

    The dense baseline's run stands in for its grid twin: both are the same configuration.
    """
    found: dict[tuple[Any, ...], dict[str, record.RecordedTrial]] = {}
    for t in record.read_all(study, states=(TrialState.COMPLETE,)):
        k = key(t.params)
        if k in wanted and t.params["precision"] not in found.get(k, {}):
            found.setdefault(k, {})[t.params["precision"]] = t
    out = {}
    for k, by_precision in found.items():
        if any(p not in by_precision for p in PRECISIONS):
            continue
        lead = by_precision["fp32"]  # the run's own trial: what the run spent and built
        dense = lead.record.untrained or {}
        rows = []
        for precision in PRECISIONS:
            t = by_precision[precision]
            m, u = t.metrics, t.record.untrained or {}
            rows.append({
                **wanted[k], "precision": precision, "seed": (lead.record.config or {}).get("seed", seed),
                "graph": f"p{dense.get('param_count')}", "prune_achieved": lead.record.prune_achieved,
                "metric": m.get(metric), "energy_j": lead.metrics.get("energy_j"),
                "energy_source": lead.metrics.get("energy_source"), "train_s": lead.metrics.get("train_s"),
                **{name: m.get(name, u.get(name)) for name in FIGURES},
                **{f"untrained_{name}": u.get(name) for name in UNTRAINED},
                "curve": json.dumps(curve(by_precision), separators=(",", ":")) if precision == "fp32" else "",
                "_onnx": t.onnx,
            })
        out[k] = rows
    return out


def curve(by_precision: dict[str, record.RecordedTrial]) -> list[dict[str, Any]]:
    """The run's curve, from its lead trial: [{epoch, metric, train_s, energy_j}] after every epoch."""
    lead = next((t for t in by_precision.values() if t.lead and t.record.curve), None)
    points = (lead.record.curve if lead else None) or next((t.record.curve for t in by_precision.values() if t.record.curve), [])
    return [{k: compact(p.get(k)) for k in ("epoch", "metric", "train_s", "energy_j")} for p in points]


def compact(value: Any) -> Any:
    """A measured float to 6 significant digits (far finer than its noise): the table stays small."""
    return float(f"{value:.6g}") if isinstance(value, float) else value


def host() -> dict[str, Any]:
    return {"host": socket.gethostname(), "cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()}


def build(args: argparse.Namespace) -> None:
    table = Table(args.out)
    configs = grid()[: args.limit]
    done = table.done()
    todo = [c for c in configs if key(c) not in done]
    print(f"{len(configs) - len(todo)}/{len(configs)} configurations already in {args.out}; {len(todo)} to run",
          file=sys.stderr, flush=True)
    if not todo:
        return
    builder = Builder(args)
    meta = table.meta()
    if meta.get("epochs") not in (None, builder.epochs):
        raise SystemExit(f"{args.out} was built with --epochs {meta['epochs']}, not {builder.epochs}; pass --epochs "
                         f"{meta['epochs']} or another --out")
    if meta.get("channel_multiple") not in (None, channel_multiple()):
        raise SystemExit(f"{args.out} was built pruning to channel multiples of {meta['channel_multiple']}, this host "
                         f"rounds to {channel_multiple()}; set EFFSEARCH_CHANNEL_MULTIPLE={meta['channel_multiple']}")
    spent0 = float(meta.get("build_s", 0.0))
    t0 = last = time.perf_counter()
    count = len(configs) - len(todo)

    def on_row(rows: list[dict[str, Any]]) -> None:
        nonlocal count, last
        table.append(rows)
        count += 1
        now = time.perf_counter()
        total = spent0 + now - t0
        table.update_meta(
            epochs=builder.epochs, grid={k: list(v) for k, v in GRID.items()}, precisions=list(PRECISIONS),
            channel_multiple=channel_multiple(), chunk=CHUNK, example=str(EXAMPLE.relative_to(HERE.parent.parent)),
            configurations=count, build_s=round(total, 1), s_per_configuration=round(total / max(count, 1), 1),
            **host(),
        )
        print(f"{count}/{len(configs)} configurations, {now - last:.0f} s this one, {total:.0f} s in all "
              f"({total / count:.0f} s per configuration)", file=sys.stderr, flush=True)
        last = now

    missing = builder.run(todo, seed=0, tag="table", on_row=on_row)
    if missing:  # a run that failed is tried once more
        print(f"{len(missing)} configurations did not complete; running them again", file=sys.stderr, flush=True)
        missing = builder.run(missing, seed=0, tag="again", on_row=on_row)
    if missing:
        raise SystemExit(f"{len(missing)} configurations failed twice and are not in the table: {missing}")


def seed_check(args: argparse.Namespace) -> None:
    """Train SEED_CHECK configurations spread over the grid with seeds 0 and 1; |Δ accuracy| of fp32."""
    configs = grid()
    picked = [configs[round(i * (len(configs) - 1) / (SEED_CHECK - 1))] for i in range(SEED_CHECK)][: args.limit]
    builder = Builder(args)
    t0 = time.perf_counter()
    metric: dict[int, dict[tuple[Any, ...], float]] = {0: {}, 1: {}}
    for seed in (0, 1):
        def on_row(rows: list[dict[str, Any]], seed: int = seed) -> None:
            fp32 = next(r for r in rows if r["precision"] == "fp32")
            metric[seed][key(fp32)] = float(fp32["metric"])
        builder.run(picked, seed=seed, tag=f"seedcheck{seed}", on_row=on_row)
    deltas = []
    for c in picked:
        k = key(c)
        if k in metric[0] and k in metric[1]:
            d = abs(metric[0][k] - metric[1][k])
            deltas.append({**c, "seed0": metric[0][k], "seed1": metric[1][k], "abs_delta": compact(d)})
            print(f"{c}: {metric[0][k]:.4f} vs {metric[1][k]:.4f}, |Δ| {d:.4f}")
    median = statistics.median(d["abs_delta"] for d in deltas) if deltas else None
    print(f"median |Δ accuracy| over {len(deltas)} configurations: {median} (goal <= 0.01) at {builder.epochs} epochs")
    Table(args.out).update_meta(seed_check={
        "epochs": builder.epochs, "configurations": deltas, "median_abs_delta": median, "goal": 0.01,
        "met": median is not None and median <= 0.01, "seconds": round(time.perf_counter() - t0, 1), **host(),
    })


def latency(args: argparse.Namespace) -> None:
    """Time every kept (graph, precision) ONNX file together, interleaved, into <out>_latency.csv."""
    from effsearch.measure.metric import Streamed

    table = Table(args.out)
    wanted = sorted({(r["graph"], r["precision"]) for r in table.rows()})
    onnx = Path(args.work) / "onnx"
    paths = {gp: onnx / f"{gp[0]}-{gp[1]}.onnx" for gp in wanted}
    absent = [str(p) for p in paths.values() if not p.is_file()]
    if absent:
        raise SystemExit(f"{len(absent)} ONNX files are not under {onnx} (built on another machine, or removed): "
                         f"{absent[:3]}; rebuild those configurations with --work {args.work}")
    if not paths:
        raise SystemExit(f"{args.out} has no rows to time")
    uf = load_user_file(args.file)
    _, datasets = probe(uf)
    sample = Streamed(datasets[1]).head(1)  # what `tune` times: the first validation sample, batch 1
    dense = max(paths, key=lambda gp: (gp[1] == "fp32", int(gp[0].lstrip("p") or 0)))  # the largest fp32 graph
    t0 = time.perf_counter()
    timed = measure_blocks(paths, dense, sample, threads=1, protocol=LATENCY_PROTOCOL)
    seconds = time.perf_counter() - t0
    out = args.out.with_name(f"{args.out.stem}_latency.csv")
    with open(out, "w", newline="") as f:
        fields = ["graph", "precision", *next(iter(timed.values())).to_dict()]
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for gp in wanted:
            w.writerow({"graph": gp[0], "precision": gp[1], **{k: compact(v) for k, v in timed[gp].to_dict().items()}})
    table.update_meta(latency={"file": out.name, "models": len(paths), "reference": list(dense), "threads": 1,
                               "protocol": LATENCY_PROTOCOL, "seconds": round(seconds, 1), "when": time.time(), **host()})
    for gp in wanted:
        t = timed[gp]
        print(f"{gp[0]:>10} {gp[1]:<14} {t.p50_ms:8.4f} ms  ratio {t.ratio:.3f} [{t.ratio_lo:.3f}, {t.ratio_hi:.3f}]")
    print(f"{len(paths)} models timed together in {seconds:.0f} s -> {out}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=EXAMPLE)
    ap.add_argument("--epochs", type=int, default=EPOCHS, help=f"epochs per run (default {EPOCHS}: see EPOCHS)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N configurations of the grid")
    ap.add_argument("--out", type=Path, default=TABLE)
    ap.add_argument("--work", type=Path, default=WORK, help="studies and kept ONNX files (not committed)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--latency", action="store_true", help="time every (graph, precision) of the table together")
    mode.add_argument("--seed-check", action="store_true", help=f"{SEED_CHECK} configurations with two seeds each")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.basicConfig(level=logging.WARNING)
    if args.latency:
        latency(args)
    elif args.seed_check:
        seed_check(args)
    else:
        build(args)


if __name__ == "__main__":
    main()
