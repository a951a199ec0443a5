"""What every artifact of a study is measured with: the metric on onnxruntime, size, latency, energy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from effsearch.measure.energy import energy_source
from effsearch.measure.latency import measure_latency
from effsearch.measure.metric import ArrayData, ort_metric, stack_dataset
from effsearch.userfile import UserFile, default_metric

__all__ = ["Measurer"]


class Measurer:
    """The validation set, calibration batches and latency protocol of a study, prepared once in the driver.

    latency_threads: onnxruntime intra-op threads for latency (fixed, recorded on every trial).
    """

    def __init__(
        self,
        uf: UserFile,
        datasets: tuple[Any, Any],
        meter_cls: Any,
        providers: list[str],
        latency_threads: int = 1,
        *,
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
        out = {
            self.metric_key: metric,
            "latency_ms": latency.p50_ms,
            "latency_p90_ms": latency.p90_ms,
            "size_bytes": path.stat().st_size,
            "infer_energy_mj": infer_j * 1e3,
        }
        if infer_j > 0:
            out["flops_per_j"] = flops / infer_j
        return out
