"""One training run, in the order it happens. Stages 2 and 3 execute in the rank processes:

1. start ranks      the pool's long-lived rank processes; ranks whose datasets differ from the driver's
                    are refused (an unseeded split)
2. train            every rank: build the model, prune it (at the start, or after the dense epochs of
                    `prune_when = "finetune"`; channel counts rounded to the study's multiple), train
                    under DDP (train/loop.py), validate after each epoch (the curve) and stop where the
                    early-stopping rule says so (train/stopping.py).
                    train_s and energy_j cover the training steps and validations, for every meter: a
                    process-scope meter is read in each rank and summed, a machine-scope one once, by
                    rank 0, over the same window. A run stopped early ends here: nothing is exported
3. export           rank 0, once the process group is gone: the unwrapped module to ONNX with a parity
                    check, FLOPs and parameters counted on it (`export_trained`, below)
4. precisions       here: make each precision of the exported model (compress/quantize.py)
5. measure          here: metric, size, latency and inference energy of each file (measure/artifact.py)

Stages 4-5 are `make_and_measure`, which a model that arrives trained runs as well (reference.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from effsearch.compress.prune import count_params
from effsearch.compress.quantize import make_precision
from effsearch.config import TrainConfig
from effsearch.errors import TrialError
from effsearch.figures import ENERGY, FLOPS, PARAMS, TRAIN_S
from effsearch.inputs import head
from effsearch.measure.artifact import Measurer
from effsearch.measure.flops import FlopsReport, count_flops
from effsearch.onnx_export import ExportReport, export_onnx
from effsearch.structural import is_structural
from effsearch.train.loop import RankResult, RunSpec, first_batch
from effsearch.train.pool import WorkerPool
from effsearch.train.stopping import StopRule

__all__ = [
    "Exported", "Made", "PrecisionResult", "RunResult", "export_trained", "make_and_measure", "measure_precision", "run_training",
]

log = logging.getLogger(__name__)

Stage = Callable[[str], None]


@dataclass(frozen=True)
class Exported:
    """Stage 3's result: the fp32 ONNX file of the trained model and what was counted on the module."""

    export: ExportReport
    export_s: float
    flops: FlopsReport
    param_count_torch: int


def export_trained(module: torch.nn.Module, val_set: Any, artifact_dir: Path) -> Exported:
    """Stage 3, in rank 0: export the trained, unwrapped module and count its FLOPs."""
    t0 = time.perf_counter()
    batch = first_batch(val_set, 64)
    exported = export_onnx(module, batch, artifact_dir / "model.onnx")
    flops = count_flops(module, head(batch, 1))
    return Exported(exported, time.perf_counter() - t0, flops, count_params(module))


@dataclass(frozen=True)
class PrecisionResult:
    """One precision of a trained model: its metrics, or why it failed."""

    precision: str
    metrics: dict[str, Any] = field(default_factory=dict)
    onnx: Path | None = None
    error: str | None = None
    structural: bool = False  # the failure would repeat for this model whatever the training


@dataclass(frozen=True)
class RunResult:
    config: TrainConfig
    ranks: list[RankResult]
    energy_j: float
    energy_source: str
    timing: dict[str, float]
    precisions: list[PrecisionResult]

    @property
    def lead(self) -> RankResult:
        return self.ranks[0]

    @property
    def exported(self) -> Exported:
        return self.ranks[0].artifact

    @property
    def stopped(self) -> str | None:
        """Why the run was stopped early (it made no precision), or None."""
        return self.lead.stopped


def _train(pool: WorkerPool, spec: RunSpec, timeout_s: float | None) -> tuple[list[RankResult], float, float]:
    """Stages 2-3 on the ranks: (rank results, joules of the training steps, wall seconds of the whole run)."""
    t0 = time.perf_counter()
    ranks = pool.run(spec, spec.config.world_size, timeout_s=timeout_s)
    wall = time.perf_counter() - t0
    # Every rank read a process-scope meter; only rank 0 read a machine-scope one: each counted once.
    energy = sum(r.energy_j or 0.0 for r in ranks)
    return ranks, energy, wall


def measure_precision(measurer: Measurer, fp32: Path, precision: str, flops: int, common: dict[str, Any]) -> tuple[PrecisionResult, float, float]:
    """Stages 4-5 for one precision: (result, seconds making it, seconds measuring it)."""
    t0 = time.perf_counter()
    try:
        path = make_precision(fp32, precision, measurer.calibration)
    except TrialError as exc:
        return PrecisionResult(precision, error=str(exc), structural=is_structural(exc)), time.perf_counter() - t0, 0.0
    t1 = time.perf_counter()
    try:
        metrics = measurer.measure(path, flops)
    except Exception as exc:
        error = f"measuring {precision} failed: {type(exc).__name__}: {exc}"
        return PrecisionResult(precision, error=error, structural=is_structural(exc)), t1 - t0, time.perf_counter() - t1
    return PrecisionResult(precision, {**metrics, **common}, path), t1 - t0, time.perf_counter() - t1


@dataclass(frozen=True)
class Made:
    """Stages 4-5's result: every precision's result, and the seconds spent making and measuring them."""

    precisions: list[PrecisionResult]
    quantize_s: float
    measure_s: float


def make_and_measure(
    measurer: Measurer,
    exported: Exported,
    precisions: tuple[str, ...],
    *,
    energy_j: float,
    train_s: float,
    extra: dict[str, Any] | None = None,
    stage: Stage = lambda s: None,
) -> Made:
    """Stages 4-5: make and measure each precision of the exported model, one after another.

    energy_j, train_s: what training the model cost, recorded with every precision's metrics (0 for a
    model that arrives trained); extra: further figures of the run to record with them.
    """
    common = {
        FLOPS.key: exported.flops.flops,
        "flops_complete": exported.flops.complete,
        PARAMS.key: exported.flops.param_count,
        ENERGY.key: energy_j,
        "energy_source": measurer.energy_source,
        TRAIN_S.key: train_s,
        **(extra or {}),
    }
    results, t_quant, t_measure = [], 0.0, 0.0
    for precision in precisions:
        stage(precision)
        result, made_s, measured_s = measure_precision(measurer, exported.export.path, precision, exported.flops.flops, common)
        results.append(result)
        t_quant += made_s
        t_measure += measured_s
    return Made(results, t_quant, t_measure)


def run_training(
    pool: WorkerPool,
    measurer: Measurer,
    config: TrainConfig,
    precisions: tuple[str, ...],
    artifact_dir: Path,
    *,
    device: str = "cpu",
    threads_per_rank: int = 1,
    collective_timeout_s: float = 60.0,
    timeout_s: float | None = None,
    stop: StopRule | None = None,
    channel_multiple: int | None = None,
    stage: Stage = lambda s: None,
) -> RunResult:
    """Train once, then make and measure every precision of the trained model (stages 1-5 above).

    stop: the early-stopping rule the ranks apply after each epoch; a stopped run returns no precisions.
    channel_multiple: what the ranks round pruned channel counts to, the study's (Screen.channel_multiple),
    so that every host of a study builds one graph from one ratio; None: this host's own.
    """
    t_start = time.perf_counter()
    meter_cls = measurer.meter_cls
    spec = RunSpec(
        config,
        str(artifact_dir),
        device=device,
        threads_per_rank=threads_per_rank,
        collective_timeout_s=collective_timeout_s,
        meter=meter_cls.name,
        finish=export_trained,
        data=measurer.data,
        stop=stop,
        channel_multiple=channel_multiple,
    )
    stage("starting ranks")
    pool.ensure(config.world_size)
    stage("training")
    ranks, energy, run_wall = _train(pool, spec, timeout_s)
    trained = {TRAIN_S.key: max(r.train_s for r in ranks), "build_s": max(r.build_s for r in ranks), "run_s": run_wall}
    if ranks[0].stopped:
        timing = {"wall_s": time.perf_counter() - t_start, **trained}
        return RunResult(config, ranks, energy, measurer.energy_source, timing, [])
    exported: Exported = ranks[0].artifact
    # Every rank skips the same steps (their gradients are all-reduced before the scaler looks).
    extra = {"skipped_steps": ranks[0].skipped_steps} if config.train_precision == "fp16" else None
    made = make_and_measure(measurer, exported, precisions, energy_j=energy, train_s=trained[TRAIN_S.key], extra=extra, stage=stage)
    timing = {
        "wall_s": time.perf_counter() - t_start,
        **trained,
        "export_s": exported.export_s,
        "quantize_s": made.quantize_s,
        "measure_s": made.measure_s,
    }
    return RunResult(config, ranks, energy, measurer.energy_source, timing, made.precisions)
