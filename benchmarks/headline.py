"""What effsearch is worth against what a user would otherwise do, on MNIST-1D (examples/mnist1d_cnn.py).

Four arms per seed, each with the same budget of training epochs, each optimising accuracy, latency and
size, each training through effsearch's own pipeline (pipeline.run_training) and measurer, so that only
the search differs:

  effsearch  effsearch's default study (early stopping and screening as by default; every precision of a
             run is a free point), run until its epochs, stopped runs included, reach the budget
  recipe     the sequential recipe: two thirds of the budget tuning the dense fp32 model's training
             settings for accuracy alone (Optuna's default single-objective sampler), then the best dense
             model pruned at 0.25, 0.5 and 0.75 and each fine-tuned (the last third of the budget, split
             evenly, at least an epoch each) at a tenth of its learning rate, then every precision of each
             (and of the best dense model)
  optuna     a plain multi-objective Optuna study over the same joint space, Optuna's default sampler,
             one precision per trial: no free points, no screening, no stopping
  random     random search over the joint space, one precision per trial

The effsearch, optuna and random arms stop after the run that brings their epochs to the budget (or past
it, by less than a run); the recipe's tuning stops before a run would take it past two thirds.

Hypervolume is taken over (accuracy, latency / the dense model's, size / the dense model's), every point
of an arm, with the fixed reference point (0.5, 1.1, 1.1). The curve of hypervolume against cumulative
training seconds (the runs' own train_s) uses the validation accuracy and each configuration's untrained
latency ratio: one timing per distinct graph (pruned parameter count and precision), the same figure in
every arm. Then each arm's front on those figures is re-measured with the other arms' fronts of the seed
in one process (interleaved blocks, ratio to the untrained dense fp32 model timed among them) and scored
on the 1,000 test sequences the study never sees: the final hypervolume.

Reported per arm and seed: final hypervolume (test), the curve's final hypervolume (validation), best
test accuracy at or under 0.5x dense latency, training and wall seconds, and the training seconds
effsearch needs for its curve to reach the recipe's and Optuna's final curve hypervolume (null when never).

Goal: effsearch reaches the recipe's and Optuna's final hypervolume in at most 0.5x their training time,
and its final hypervolume is at least 1.02x every other arm's (medians over seeds).

    python benchmarks/headline.py --json                     # seeds 0,1,2; budget 40 x the example's epochs
    python benchmarks/headline.py --seeds 0 --budget-epochs 4 --epochs 1   # a smoke run (minutes)
    python benchmarks/headline.py --arms effsearch --no-early-stop           # a variant of one arm, its own files
    python benchmarks/headline.py --arms effsearch --space benchmarks/prune_finetune.toml
    python benchmarks/headline.py --arms effsearch,recipe --epochs 8 --budget-epochs 160   # longer runs, same budget

A variant (fewer arms, --no-early-stop, --space, --epochs, --budget-epochs) writes files of its own, named
after it (headline-<example>-effsearch+recipe-epochs-8-budget-160.*), never the headline's.

Writes benchmarks/results/headline-<example>.json, .md (the table) and .png (hypervolume vs training time),
and each seed's row as it ends (headline-<example>.seed-<n>.json): a later run with the same settings reuses it,
so `--seeds 1` then `--seeds 0,1,2` adds seeds up.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

from effsearch import record
from effsearch.compress.prune import prune
from effsearch.compress.quantize import make_precision
from effsearch.measure.artifact import Measurer
from effsearch.measure.blocks import measure_blocks
from effsearch.measure.metric import Streamed, ort_metric
from effsearch.onnx_export import export_onnx
from effsearch.results.hypervolume import hypervolume, nondominated
from effsearch.run.pipeline import export_trained, measure_precision, run_training
from effsearch.space import load_space
from effsearch.study import Instruments, TuneSettings, tune
from effsearch.study.tuner import config_of
from effsearch.train.loaders import loader_options
from effsearch.train.loop import first_batch
from effsearch.train.pool import WorkerPool, available_cores, hardware_world_sizes
from effsearch.userfile import default_metric, load_user_file, probe

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "examples" / "mnist1d_cnn.py"
RESULTS = HERE / "results"
ARMS = ("effsearch", "recipe", "optuna", "random")
OBJECTIVES = ("accuracy", "latency_ms", "size_bytes")
# Minimised objectives: minus accuracy, latency and size as ratios to the dense model's.
REFERENCE = np.array([-0.5, 1.1, 1.1])
RECIPE_PRUNE = (0.25, 0.5, 0.75)
HALF_LATENCY = 0.5

log = logging.getLogger("headline")


def say(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


# -- what every arm produces ----------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One measured model: its validation accuracy, graph and file."""

    accuracy: float
    prune_ratio: float
    precision: str
    size_bytes: int
    onnx: str


@dataclass(frozen=True)
class Run:
    """One training run, in the order it ran: what it cost and the points it made (none when stopped)."""

    train_s: float
    epochs: int
    points: tuple[Point, ...] = ()


@dataclass
class ArmResult:
    name: str
    runs: list[Run] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def epochs(self) -> int:
        return sum(r.epochs for r in self.runs)

    @property
    def train_s(self) -> float:
        return sum(r.train_s for r in self.runs)


def keep_weights(module: torch.nn.Module, val_set: Any, artifact_dir: Path):
    """export_trained, and the trained weights kept beside the ONNX file (model.pt): the recipe prunes them."""
    artifact_dir.mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), artifact_dir / "model.pt")
    return export_trained(module, val_set, artifact_dir)


# -- one timing per distinct graph ----------------------------------------------------------------


class Graphs:
    """Untrained latency and size ratios to the dense fp32 model, one timing per (pruned graph, precision)."""

    def __init__(self, uf, datasets, measurer: Measurer, folder: Path) -> None:
        self.uf, self.measurer, self.folder = uf, measurer, folder
        self.batch = first_batch(datasets[1], 64)
        self.dense = self._export(0.0)
        self.dense_size = self.dense.stat().st_size
        self._params: dict[float, int] = {}
        self._ratio: dict[tuple[int, str], float] = {}

    def _export(self, ratio: float) -> Path:
        torch.manual_seed(0)
        model = self.uf.registration.model()
        if ratio > 0:
            prune(model, self.batch, ratio)
        path = self.folder / f"untrained-{ratio:.2f}" / "model.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        export_onnx(model.eval(), self.batch, path)
        return path

    def key(self, ratio: float, precision: str) -> tuple[int, str]:
        if ratio not in self._params:
            torch.manual_seed(0)
            model = self.uf.registration.model()
            self._params[ratio] = prune(model, self.batch, ratio).params_after if ratio > 0 else sum(p.numel() for p in model.parameters())
        return self._params[ratio], precision

    def latency_ratio(self, ratio: float, precision: str) -> float:
        key = self.key(ratio, precision)
        if key not in self._ratio:
            path = make_precision(self._export(ratio), precision, self.measurer.calibration)
            timed = measure_blocks({"dense": self.dense, "this": path}, "dense", self.measurer.sample, threads=1)
            self._ratio[key] = timed["this"].ratio
        return self._ratio[key]

    def objectives(self, p: Point, accuracy: float | None = None) -> list[float]:
        """The minimised objectives of a point on the curve (validation accuracy unless given)."""
        acc = p.accuracy if accuracy is None else accuracy
        return [-acc, self.latency_ratio(p.prune_ratio, p.precision), p.size_bytes / self.dense_size]


def curve(arm: ArmResult, graphs: Graphs) -> list[tuple[float, float]]:
    """(cumulative training seconds, hypervolume of every point so far) after each run."""
    pts, out, spent = [], [], 0.0
    for run in arm.runs:
        spent += run.train_s
        pts += [graphs.objectives(p) for p in run.points]
        out.append((spent, hypervolume(np.array(pts).reshape(-1, 3), REFERENCE) if pts else 0.0))
    return out


def front(arm: ArmResult, graphs: Graphs) -> list[Point]:
    """The arm's points that no other of its points dominates on the curve's figures."""
    points = [p for r in arm.runs for p in r.points]
    if not points:
        return []
    objs = np.array([graphs.objectives(p) for p in points])
    keep = nondominated(objs)
    return [p for p, o in zip(points, objs) if any(np.array_equal(o, k) for k in keep)]


# -- the arms -------------------------------------------------------------------------------------


class Bench:
    """What every arm of one seed shares: the user file, data, measurer, graphs, budget and folders."""

    def __init__(self, args: argparse.Namespace, seed: int, tmp: Path) -> None:
        self.args, self.seed, self.tmp = args, seed, tmp
        self.uf = load_user_file(args.file)
        self.info, self.datasets = probe(self.uf)
        self.tools = Instruments.choose()
        self.measurer = Measurer(self.uf, self.datasets, self.tools.meter_cls, self.tools.target.providers(), 1)
        _, self.hw = hardware_world_sizes()
        self.space = load_space(None, self.hw).clamp_world_size(self.hw)
        # --space changes effsearch's arm only (a variant); the other arms search the default space.
        self.effsearch_space = load_space(args.space, self.hw).clamp_world_size(self.hw) if args.space else self.space
        self.epochs = args.epochs or self.uf.registration.epochs
        self.budget = args.budget_epochs or 40 * self.epochs
        self.graphs = Graphs(self.uf, self.datasets, self.measurer, tmp / "graphs")

    def config(self, params: dict[str, Any], epochs: int):
        cfg = config_of(params, epochs=epochs, seed=self.seed)
        loader = loader_options(self.uf.registration.loader, device="cpu", world_size=cfg.world_size, cores=available_cores())
        return replace(cfg, loader=loader)

    def train(self, pool: WorkerPool, measurer: Measurer, cfg, precisions: tuple[str, ...], folder: Path):
        return run_training(pool, measurer, cfg, precisions, folder, threads_per_rank=max(1, available_cores() // cfg.world_size))

    @staticmethod
    def points(result, prune_ratio: float) -> tuple[Point, ...]:
        return tuple(
            Point(float(p.metrics["accuracy"]), prune_ratio, p.precision, int(p.metrics["size_bytes"]), str(p.onnx))
            for p in result.precisions if not p.error
        )

    # (a) effsearch's default study
    def effsearch(self) -> ArmResult:
        name = f"effsearch-{self.seed}"
        settings = TuneSettings(
            study_name=name, storage_url=self.args.db or f"sqlite:///{self.tmp}/headline.db", trials=10_000, space=self.effsearch_space,
            objectives=OBJECTIVES, directions=("maximize", "minimize", "minimize"), epochs=self.epochs, seed=self.seed,
            artifacts=self.tmp / "effsearch", early_stop=not self.args.no_early_stop,
        )
        t0 = time.perf_counter()
        _, summary = tune(settings, uf=self.uf, probe=self.info, datasets=self.datasets, until=lambda s: epochs_trained(s) >= self.budget)
        wall = time.perf_counter() - t0
        every = record.read_all(summary.study)
        by_run: dict[int, list[Point]] = {}
        for t in every:
            if t.state == TrialState.COMPLETE and t.onnx:
                by_run.setdefault(t.run, []).append(
                    Point(float(t.metrics["accuracy"]), float(t.config.get("prune_ratio", 0.0)), str(t.params["precision"]), int(t.metrics["size_bytes"]), t.onnx)
                )
        runs = sorted((t for t in every if t.is_training_run), key=lambda t: t.run)
        arm = ArmResult("effsearch", wall_s=wall)
        for t in runs:
            arm.runs.append(Run(float((t.record.timing or {}).get("train_s", 0.0)), len(t.curve), tuple(by_run.get(t.run, ()))))
        return arm

    # (c) and (d): one precision per trial, nothing free, nothing screened or stopped
    def plain(self, name: str, sampler: optuna.samplers.BaseSampler) -> ArmResult:
        study = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler)
        arm = ArmResult(name)
        t0 = time.perf_counter()
        with WorkerPool(self.uf.path) as pool:
            while arm.epochs < self.budget:
                trial = study.ask()
                params = self.space.suggest(trial)
                cfg = self.config(params, self.epochs)
                try:
                    result = self.train(pool, self.measurer, cfg, (params["precision"],), self.tmp / name / f"run-{trial.number}")
                except Exception as exc:  # a failed run still spent its epochs
                    log.warning("%s run %d failed: %s", name, trial.number, exc)
                    study.tell(trial, state=TrialState.FAIL)
                    arm.runs.append(Run(0.0, cfg.epochs))
                    continue
                pts = self.points(result, cfg.prune_ratio)
                arm.runs.append(Run(result.timing["train_s"], cfg.epochs, pts))
                if pts:
                    m = result.precisions[0].metrics
                    study.tell(trial, [m["accuracy"], m["latency_ms"], m["size_bytes"]])
                else:
                    study.tell(trial, state=TrialState.FAIL)
        arm.wall_s = time.perf_counter() - t0
        return arm

    def optuna_arm(self) -> ArmResult:
        return self.plain("optuna", optuna.samplers.TPESampler(seed=self.seed))  # Optuna's default sampler, seeded

    def random_arm(self) -> ArmResult:
        return self.plain("random", optuna.samplers.RandomSampler(seed=self.seed))

    # (b) the sequential recipe
    def recipe(self) -> ArmResult:
        arm = ArmResult("recipe")
        dense_space = self.space.fixed("prune_ratio", 0.0).fixed("precision", "fp32")
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=self.seed))
        # The last third fine-tunes the three pruned models (at least an epoch each); the first two thirds
        # tune, stopping before a run would pass them (one run at least).
        each = max(1, round(self.budget / 3 / len(RECIPE_PRUNE)))
        tune_epochs = self.budget - each * len(RECIPE_PRUNE)
        best: tuple[float, Any, Path] | None = None
        t0 = time.perf_counter()
        with WorkerPool(self.uf.path) as pool:
            while not arm.runs or arm.epochs + self.epochs <= tune_epochs:
                trial = study.ask()
                params = dense_space.suggest(trial)
                cfg = self.config(params, self.epochs)
                folder = self.tmp / "recipe" / f"dense-{trial.number}"
                try:
                    result = self.train(pool, self.measurer, cfg, ("fp32",), folder)
                except Exception as exc:
                    log.warning("recipe run %d failed: %s", trial.number, exc)
                    study.tell(trial, state=TrialState.FAIL)
                    arm.runs.append(Run(0.0, cfg.epochs))
                    continue
                pts = self.points(result, 0.0)
                arm.runs.append(Run(result.timing["train_s"], cfg.epochs, pts))
                if not pts:
                    study.tell(trial, state=TrialState.FAIL)
                    continue
                study.tell(trial, pts[0].accuracy)
                if best is None or pts[0].accuracy > best[0]:
                    best = (pts[0].accuracy, cfg, folder)
        if best is None:
            arm.wall_s = time.perf_counter() - t0
            return arm
        _, best_cfg, best_dir = best
        # Every precision of the best dense model: free, it is trained already.
        exported = Path(best_dir) / "model.onnx"
        extra = []
        for precision in self.space.precisions:
            if precision != "fp32":
                pr, _, _ = measure_precision(self.measurer, exported, precision, 0, {})
                if not pr.error:
                    extra.append(Point(float(pr.metrics["accuracy"]), 0.0, precision, int(pr.metrics["size_bytes"]), str(pr.onnx)))
        arm.runs.append(Run(0.0, 0, tuple(extra)))
        # Prune the best dense model and fine-tune each at a tenth of its learning rate, the last third split evenly.
        trained = self._trained_file(best_dir / "model.pt")
        uf = load_user_file(trained)
        measurer = Measurer(uf, self.datasets, self.tools.meter_cls, self.tools.target.providers(), 1)
        with WorkerPool(uf.path) as pool:
            for ratio in RECIPE_PRUNE:
                cfg = replace(best_cfg, prune_ratio=ratio, lr=best_cfg.lr / 10, epochs=each)
                try:
                    result = self.train(pool, measurer, cfg, self.space.precisions, self.tmp / "recipe" / f"pruned-{ratio}")
                except Exception as exc:
                    log.warning("recipe fine-tuning at %.2f failed: %s", ratio, exc)
                    arm.runs.append(Run(0.0, each))
                    continue
                arm.runs.append(Run(result.timing["train_s"], each, self.points(result, ratio)))
        arm.wall_s = time.perf_counter() - t0
        return arm

    def _trained_file(self, weights: Path) -> Path:
        """A user file whose model is the example's, arriving trained with `weights`."""
        path = self.tmp / "recipe" / "trained_model.py"
        path.write_text(
            "import torch\nimport effsearch\nfrom effsearch.userfile import load_user_file\n\n"
            f"_example = load_user_file({str(self.uf.path)!r}).registration\n\n\n"
            "def build():\n    model = _example.model()\n"
            f"    model.load_state_dict(torch.load({str(weights)!r}, weights_only=True))\n    return model.eval()\n\n\n"
            "effsearch.register(model=build, data=_example.data, name='recipe-trained', epochs=1, trained=True)\n"
        )
        return path


def epochs_trained(study: optuna.Study) -> int:
    """Epochs the study's training runs trained: a completed run its curve's length, a stopped one as far as it got."""
    return sum(len(t.curve) for t in record.read_all(study) if t.is_training_run)


# -- scoring --------------------------------------------------------------------------------------


def final_scores(bench: Bench, arms: dict[str, ArmResult]) -> dict[str, dict[str, Any]]:
    """Every arm's front re-measured together, scored on the test sequences: hypervolume and best at half latency."""
    fronts = {name: front(arm, bench.graphs) for name, arm in arms.items()}
    paths = {"dense": bench.graphs.dense}
    for name, pts in fronts.items():
        for i, p in enumerate(pts):
            paths[(name, i)] = Path(p.onnx)
    timed = measure_blocks(paths, "dense", bench.measurer.sample, threads=1)
    module = sys.modules[bench.uf.registration.model.__module__]
    test = Streamed(module.test_data())
    out = {}
    for name, pts in fronts.items():
        objs, best = [], None
        for i, p in enumerate(pts):
            acc = ort_metric(Path(p.onnx), test, bench.uf.registration.metric or default_metric)
            ratio = timed[(name, i)].ratio
            objs.append([-acc, ratio, p.size_bytes / bench.graphs.dense_size])
            if ratio <= HALF_LATENCY and (best is None or acc > best):
                best = acc
        hv = hypervolume(np.array(objs).reshape(-1, 3), REFERENCE) if objs else 0.0
        out[name] = {"final_hv": hv, "best_acc_at_half_latency": best, "front": len(pts), "front_points": objs}
    return out


def time_to_reach(points: list[tuple[float, float]], goal: float) -> float | None:
    """Training seconds at which a curve first reaches `goal`, or None."""
    return next((s for s, hv in points if hv >= goal), None)


def seed_row(args: argparse.Namespace, seed: int, tmp: Path) -> dict[str, Any]:
    bench = Bench(args, seed, tmp)
    say(f"seed {seed}: budget {bench.budget} epochs per arm ({bench.epochs} per run)")
    arms = {}
    makers = {"effsearch": bench.effsearch, "recipe": bench.recipe, "optuna": bench.optuna_arm, "random": bench.random_arm}
    for name in args.arms:
        arms[name] = makers[name]()
        a = arms[name]
        say(f"seed {seed} {name}: {sum(r.epochs > 0 for r in a.runs)} runs, {a.epochs} epochs, {a.train_s:.0f} s training, {a.wall_s:.0f} s wall")
    curves = {name: curve(arm, bench.graphs) for name, arm in arms.items()}
    scores = final_scores(bench, arms)
    row: dict[str, Any] = {"seed": seed, "budget_epochs": bench.budget, "epochs_per_run": bench.epochs, "arms": {}}
    for name, arm in arms.items():
        c = curves[name]
        row["arms"][name] = {
            **{k: v for k, v in scores[name].items() if k != "front_points"},
            "curve_final_hv": c[-1][1] if c else 0.0,
            "train_s": arm.train_s, "wall_s": arm.wall_s, "epochs": arm.epochs, "runs": sum(r.epochs > 0 for r in arm.runs),
            "curve": c,
        }
    for other in ("recipe", "optuna"):
        if other not in arms or "effsearch" not in arms:
            continue
        goal = row["arms"][other]["curve_final_hv"]
        reach = time_to_reach(curves["effsearch"], goal)
        row[f"effsearch_s_to_{other}_hv"] = reach
        row[f"time_ratio_vs_{other}"] = None if reach is None else reach / max(arms[other].train_s, 1e-9)
    others = [row["arms"][n]["final_hv"] for n in arms if n != "effsearch"]
    if "effsearch" in arms and others:
        row["hv_ratio_min"] = row["arms"]["effsearch"]["final_hv"] / max(others) if max(others) > 0 else None
    say(f"seed {seed}: final HV " + ", ".join(f"{n} {row['arms'][n]['final_hv']:.4f}" for n in arms)
        + "".join(f"; effsearch reaches {o}'s curve HV after {row[f'effsearch_s_to_{o}_hv']} s" for o in ("recipe", "optuna") if f"effsearch_s_to_{o}_hv" in row))
    return row


def median_or_none(values: list[float | None]) -> float | None:
    """The median, where a None (never reached) counts as infinitely late; None if the median is."""
    xs = sorted(float("inf") if v is None else v for v in values)
    m = statistics.median(xs) if xs else None
    return None if m is None or m == float("inf") else m


def arms_of(rows: list[dict[str, Any]]) -> list[str]:
    return list(rows[0]["arms"]) if rows else []


def headline(rows: list[dict[str, Any]]) -> dict[str, Any]:
    t_recipe = median_or_none([r.get("time_ratio_vs_recipe") for r in rows])
    t_optuna = median_or_none([r.get("time_ratio_vs_optuna") for r in rows])
    hv_min = median_or_none([r.get("hv_ratio_min") for r in rows])
    best = {n: median_or_none([r["arms"][n]["best_acc_at_half_latency"] for r in rows]) for n in arms_of(rows)}
    met = t_recipe is not None and t_optuna is not None and hv_min is not None and t_recipe <= 0.5 and t_optuna <= 0.5 and hv_min >= 1.02
    return {
        "time_ratio_vs_recipe": t_recipe, "time_ratio_vs_optuna": t_optuna, "hv_ratio_min": hv_min,
        "best_acc_at_half_latency": best, "arms": arms_of(rows), "seeds": [r["seed"] for r in rows], "goal_met": met,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| seed | arm | final HV (test) | curve HV (val) | best test acc at <= 0.5x latency | epochs | training s | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for n in r["arms"]:
            a = r["arms"][n]
            best = "-" if a["best_acc_at_half_latency"] is None else f"{a['best_acc_at_half_latency']:.3f}"
            lines.append(f"| {r['seed']} | {n} | {a['final_hv']:.4f} | {a['curve_final_hv']:.4f} | {best} | {a['epochs']} | {a['train_s']:.0f} | {a['wall_s']:.0f} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 4), squeeze=False)
    for ax, r in zip(axes[0], rows):
        for n in r["arms"]:
            c = r["arms"][n]["curve"]
            ax.step([0.0] + [s for s, _ in c], [0.0] + [h for _, h in c], where="post", label=n)
        ax.set_title(f"seed {r['seed']}")
        ax.set_xlabel("training seconds")
        ax.set_ylabel("hypervolume (validation, untrained latency)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def variant_of(args: argparse.Namespace) -> str:
    """The file-name suffix of a variant (fewer arms, effsearch without early stopping or with a space file,
    other epochs per run or another budget), so that it keeps its own files beside the headline's; "" for the
    headline itself."""
    return "".join([
        f"-{'+'.join(args.arms)}" if args.arms != list(ARMS) else "",
        "-no-early-stop" if args.no_early_stop else "",
        f"-{args.space.stem}" if args.space else "",
        f"-epochs-{args.epochs}" if args.epochs else "",
        f"-budget-{args.budget_epochs}" if args.budget_epochs else "",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=EXAMPLE)
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--budget-epochs", type=int, default=None, help="training epochs per arm (default 40 x the example's epochs)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the example's)")
    ap.add_argument("--db", default=None, help="storage URL for effsearch's studies (default: a temporary SQLite file)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder of the JSON, table and plot")
    ap.add_argument("--json", action="store_true", help="print the headline JSON on stdout")
    ap.add_argument("--again", action="store_true", help="run every seed, also those whose row is kept in --out")
    ap.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms to run (default all four)")
    ap.add_argument("--no-early-stop", action="store_true", help="effsearch's arm without early stopping (a variant: its own files)")
    ap.add_argument("--space", type=Path, default=None, help="a TOML space file for effsearch's arm only (a variant: its own files)")
    args = ap.parse_args()
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if unknown := [a for a in args.arms if a not in ARMS]:
        ap.error(f"--arms {','.join(unknown)}: not an arm; choose among {', '.join(ARMS)}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("effsearch").setLevel(logging.ERROR)
    # The recipe prunes its best dense model: every run keeps its trained weights. Rank processes pickle
    # the finishing function by module, so it is taken from this file imported under its own name.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(HERE))
    import effsearch.run.pipeline

    effsearch.run.pipeline.export_trained = importlib.import_module(Path(__file__).stem).keep_weights
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    variant = variant_of(args)
    stem = f"headline-{args.file.stem}{variant}"
    # Each seed's row is kept as it ends, so seeds run in separate sittings add up (--again runs a kept seed anew).
    settings = {"file": str(args.file.resolve()), "budget_epochs": args.budget_epochs, "epochs": args.epochs}
    if variant:
        settings["variant"] = variant
    with tempfile.TemporaryDirectory() as tmp_name:
        rows = []
        for seed in seeds:
            kept = args.out / f"{stem}.seed-{seed}.json"
            saved = json.loads(kept.read_text()) if kept.exists() and not args.again else {}
            if saved.get("settings") == settings:
                say(f"seed {seed}: the row kept in {kept} (--again runs it anew)")
                rows.append(saved["row"])
                continue
            tmp = Path(tmp_name) / f"seed-{seed}"
            tmp.mkdir()
            rows.append(seed_row(args, seed, tmp))
            kept.write_text(json.dumps({"settings": settings, "row": rows[-1]}, indent=2))
    result = {"headline": headline(rows), "file": str(args.file), "reference_point": [0.5, 1.1, 1.1], "rows": rows}
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (args.out / f"{stem}.md").write_text(table(rows) + "\n")
    plot(rows, args.out / f"{stem}.png")
    say(table(rows))
    h = result["headline"]
    say(f"headline{variant}: time ratio vs recipe {h['time_ratio_vs_recipe']}, vs Optuna {h['time_ratio_vs_optuna']}, "
        f"HV ratio {h['hv_ratio_min']}; goal {'met' if h['goal_met'] else 'not met'}")
    if args.json:
        print(json.dumps({"headline": h}, indent=2))


if __name__ == "__main__":
    main()
