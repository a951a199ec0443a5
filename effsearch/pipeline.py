"""One training run, as one obvious sequence: (prune) -> train under DDP -> export -> each precision -> measure."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from effsearch.compress.quantize import make_precision
from effsearch.errors import TrialError
from effsearch.measure.energy import energy_source
from effsearch.measure.latency import measure_latency
from effsearch.measure.metric import ArrayData, ort_metric, stack_dataset
from effsearch.space import TrainConfig
from effsearch.train.loop import RankResult, RunSpec
from effsearch.train.pool import WorkerPool
from effsearch.userfile import UserFile, default_metric

__all__ = ["Measurer", "PrecisionResult", "RunResult", "run_training"]

log = logging.getLogger(__name__)

Stage = Callable[[str], None]


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


class Measurer:
    """What every run is measured with, prepared once per study in the driver.

    latency_threads: onnxruntime intra-op threads for latency (fixed, recorded on every trial).
    """

    def __init__(
        self,
        uf: UserFile,
        datasets: tuple[Any, Any],
        meter_cls: Any,
        providers: list[str],
        latency_threads: int = 1,
        warmup: int = 50,
        repeats: int = 300,
        calibration_samples: int = 256,
    ) -> None:
        self.metric_key = uf.metric_key
        self.metric = uf.registration.metric or default_metric
        train, val = datasets
        self.val: ArrayData = stack_dataset(val)
        calib = stack_dataset(train, limit=calibration_samples).inputs
        self.calibration = [calib[i : i + 32] for i in range(0, len(calib), 32)]
        self.sample: np.ndarray = self.val.inputs[:1]
        self.meter_cls = meter_cls
        self.providers = providers
        self.threads = latency_threads
        self.warmup = warmup
        self.repeats = repeats

    @property
    def energy_source(self) -> str:
        return energy_source(self.meter_cls)

    def measure(self, path: Path, flops: int) -> dict[str, Any]:
        """Metric, size, latency and inference energy of one ONNX file."""
        metric = ort_metric(path, self.val, self.metric, threads=self.threads)
        latency, joules = measure_latency(
            path, self.sample, self.threads, self.warmup, self.repeats, self.providers, self.meter_cls()
        )
        infer_j = (joules or 0.0) / latency.repeats
        return {
            self.metric_key: metric,
            "latency_ms": latency.p50_ms,
            "latency_p90_ms": latency.p90_ms,
            "size_bytes": path.stat().st_size,
            "infer_energy_mj": infer_j * 1e3,
            "flops_per_j": flops / infer_j if infer_j > 0 else None,
        }


def run_training(
    pool: WorkerPool,
    measurer: Measurer,
    config: TrainConfig,
    precisions: tuple[str, ...],
    artifact_dir: Path,
    device: str = "cpu",
    threads_per_rank: int = 1,
    collective_timeout_s: float = 60.0,
    timeout_s: float | None = None,
    stage: Stage = lambda s: None,
) -> RunResult:
    """Train once, then make and measure every precision of the trained model."""
    t_start = time.perf_counter()
    meter_cls = measurer.meter_cls
    spec = RunSpec(
        config,
        str(artifact_dir),
        device=device,
        threads_per_rank=threads_per_rank,
        collective_timeout_s=collective_timeout_s,
        meter=meter_cls.name if meter_cls.scope == "process" else None,
    )
    stage("starting ranks")
    pool.ensure(config.world_size)  # process start stays outside the energy window
    stage("training")
    machine_meter = meter_cls() if meter_cls.scope == "machine" else None
    if machine_meter is not None:
        machine_meter.start()
    t_train = time.perf_counter()
    ranks = pool.run(spec, config.world_size, timeout_s=timeout_s)
    run_wall = time.perf_counter() - t_train
    if machine_meter is not None:
        energy = machine_meter.stop()
    else:
        # Per-process meters: every rank counted once.
        energy = sum(r.energy_j or 0.0 for r in ranks)
    lead = ranks[0]
    assert lead.export is not None and lead.flops is not None
    fp32 = lead.export.path
    common = {
        "flops": lead.flops.flops,
        "param_count": lead.flops.param_count,
        "energy_j": energy,
        "energy_source": measurer.energy_source,
        "train_s": max(r.train_s for r in ranks),
    }
    results = []
    t_quant = t_measure = 0.0
    for precision in precisions:
        stage(f"{precision}")
        t0 = time.perf_counter()
        try:
            path = make_precision(fp32, precision, measurer.calibration)
        except TrialError as exc:
            results.append(PrecisionResult(precision, error=str(exc), structural=True))
            continue
        t1 = time.perf_counter()
        try:
            metrics = measurer.measure(path, lead.flops.flops)
        except Exception as exc:
            results.append(PrecisionResult(precision, error=f"measuring {precision} failed: {type(exc).__name__}: {exc}", structural=True))
            continue
        finally:
            t_quant += t1 - t0
            t_measure += time.perf_counter() - t1
        metrics = {**metrics, **common}
        if metrics["flops_per_j"] is None:
            metrics.pop("flops_per_j")
        results.append(PrecisionResult(precision, metrics, path))
    timing = {
        "wall_s": time.perf_counter() - t_start,
        "train_s": common["train_s"],
        "run_s": run_wall,
        "export_s": lead.export_s,
        "quantize_s": t_quant,
        "measure_s": t_measure,
    }
    return RunResult(config, ranks, energy, measurer.energy_source, timing, results)
