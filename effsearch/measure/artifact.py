"""What every artifact of a study is measured with: the metric on onnxruntime, size, latency, energy.

Inference energy is read with a meter that reads what the latency target runs on (a CPU target: RAPL or
the estimate, never NVML's GPU counter), over a window of repeated calls long enough for that meter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from effsearch.figures import FIGURES, FLOPS_PER_J, INFER_ENERGY, LATENCY, LATENCY_P90, SIZE, THROUGHPUT
from effsearch.inputs import Feed, at_length, feed_len, sequence_length
from effsearch.measure.energy import energy_source, meter_reads
from effsearch.measure.latency import measure_latency
from effsearch.measure.metric import Streamed, ort_metric, stack_dataset
from effsearch.fingerprint import DataFingerprint, data_fingerprint
from effsearch.userfile import UserFile, default_metric

__all__ = ["INFER_WINDOW_S", "INFER_ENERGY_KEYS", "Measurer", "check_inference_objectives", "inference_meter", "target_hardware"]

# The figures that need an inference-energy reading.
INFER_ENERGY_KEYS = tuple(k for k, f in FIGURES.items() if f.energy == "inference")

# The shortest inference-energy window: the timed latency calls of a small model last about 10 ms, and a
# CPU-time estimate reads well over tens of ms. A meter whose counter updates more slowly asks for longer
# (min_window_s: RAPL 0.2 s, NVML 1 s), so a run of four precisions pays 0.2 s, not 2 s, under the estimate.
INFER_WINDOW_S = 0.05

_CPU_PROVIDERS = ("CPUExecutionProvider", "DnnlExecutionProvider", "XnnpackExecutionProvider")
_GPU_PROVIDERS = (
    "CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider", "MIGraphXExecutionProvider",
    "DmlExecutionProvider",
)


def target_hardware(providers: list[str]) -> str | None:
    """"cpu" or "gpu": what a latency target's first onnxruntime provider runs on; None for one not known."""
    first = providers[0] if providers else "CPUExecutionProvider"
    if first in _CPU_PROVIDERS:
        return "cpu"
    if first in _GPU_PROVIDERS:
        return "gpu"
    return None


def inference_meter(training_meter: Any, providers: list[str]) -> Any:
    """The meter class inference energy is read with, or None when no usable meter reads the target's hardware.

    The training meter where it reads that hardware (so a forced --energy-meter is kept), else the best
    usable one that does, by the same rule as the training meter's choice: measured before estimated,
    then priority. On a CPU target that is RAPL where readable, else the estimate.
    """
    from effsearch.plugins import plugins_of_kind

    hardware = target_hardware(providers)
    if hardware is None:
        return None
    if meter_reads(training_meter) == hardware:
        return training_meter
    usable = [p for p in plugins_of_kind("energy_meter") if not p.unavailable and meter_reads(p.obj) == hardware]
    if not usable:
        return None
    return max(usable, key=lambda p: (bool(p.obj.measured), p.obj.priority, p.builtin)).obj


def check_inference_objectives(objectives: tuple[str, ...], training_meter: Any, providers: list[str]) -> None:
    """Refuse (StudyError, one line) an inference-energy objective that no usable meter can read here.

    Call before the study is created: such a study would record null for the objective on every trial.
    """
    from effsearch.errors import StudyError

    wanted = [k for k in objectives if k in INFER_ENERGY_KEYS]
    if not wanted or inference_meter(training_meter, providers) is not None:
        return
    hardware = target_hardware(providers) or f"{providers[0]}'s hardware"
    raise StudyError(
        f"--objectives {','.join(wanted)}: no usable energy meter reads the {hardware} the latency target runs on "
        f"({providers[0]}), so inference energy would be null on every trial; install one (e.g. pip install "
        "'effsearch[nvml]' for a GPU) or choose other objectives"
    )


class Measurer:
    """The validation set, calibration batches and latency protocol of a study, prepared once in the driver.

    meter_cls: the study's (training) energy meter; inference energy is read with inference_meter(...).
    latency_threads: onnxruntime intra-op threads for latency (fixed, recorded on every trial).
    infer_window_s: the shortest inference-energy window (longer where the meter asks, min_window_s).
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
        infer_window_s: float = INFER_WINDOW_S,
        latency_batch: int = 1,
        latency_seq_len: int | None = None,
    ) -> None:
        self.metric_key = uf.metric_key
        self.metric = uf.registration.metric or default_metric
        train, val = datasets
        # The datasets the metric is measured on: every rank must train on the same split (RunSpec.data).
        self.data: DataFingerprint = data_fingerprint(datasets)
        # Streamed: the metric reads the validation set batch by batch, whatever its size.
        self.val = Streamed(val)
        # A fixed calibration sample: the first training samples, in batches of 32 (feeds of every input).
        self.calibration = [x for x, _ in stack_dataset(train, limit=calibration_samples).batches(32)]
        # The batch each timed call takes (--latency-batch): the validation set's first samples.
        self.sample: np.ndarray | Feed = self.val.head(latency_batch)
        self.latency_batch = feed_len(self.sample)
        # Token inputs are timed at the length the validation set is padded to, or a stated shorter one.
        if latency_seq_len is not None:
            self.sample = at_length(self.sample, latency_seq_len)
        self.sequence_length = sequence_length(self.sample)
        self.meter_cls = meter_cls
        self.providers = providers
        self.threads = latency_threads
        self.warmup = warmup
        self.repeats = repeats
        self.infer_meter_cls = inference_meter(meter_cls, providers)
        self.infer_window_s = max(infer_window_s, float(getattr(self.infer_meter_cls, "min_window_s", 0.0) or 0.0))

    @property
    def energy_source(self) -> str:
        return energy_source(self.meter_cls)

    @property
    def infer_energy_source(self) -> str | None:
        """`energy_source` of the inference figure (it may differ from training's), None where none is read."""
        return None if self.infer_meter_cls is None else energy_source(self.infer_meter_cls)

    def measure(self, path: Path, flops: int) -> dict[str, Any]:
        """Metric, size, latency and inference energy of one ONNX file (inference energy None where unmeasurable)."""
        metric = ort_metric(path, self.val, self.metric, threads=self.threads)
        meter = self.infer_meter_cls() if self.infer_meter_cls is not None else None
        latency, joules = measure_latency(
            path, self.sample, self.threads, self.warmup, self.repeats, self.providers, meter,
            energy_window_s=self.infer_window_s,
        )
        out = {
            self.metric_key: metric,
            LATENCY.key: latency.p50_ms,
            LATENCY_P90.key: latency.p90_ms,
            THROUGHPUT.key: self.latency_batch / (latency.p50_ms / 1e3),
            SIZE.key: path.stat().st_size,
            INFER_ENERGY.key: None,
            "infer_energy_source": self.infer_energy_source,
        }
        if joules is not None:
            infer_j = joules / (latency.energy_calls * self.latency_batch)  # per sample
            out[INFER_ENERGY.key] = infer_j * 1e3
            if infer_j > 0:
                out[FLOPS_PER_J.key] = flops / infer_j
        return out
