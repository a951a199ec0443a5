"""onnxruntime latency at batch 1: fixed threads, warm-up, median of many calls."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from effsearch.onnx_export import INPUT_NAME
from effsearch.runtime import ort_session

__all__ = ["LatencyReport", "measure_latency"]


@dataclass(frozen=True)
class LatencyReport:
    p50_ms: float
    p90_ms: float
    repeats: int
    warmup: int
    threads: int
    window_s: float


def measure_latency(
    path: Path,
    sample: np.ndarray,
    threads: int = 1,
    warmup: int = 50,
    repeats: int = 300,
    providers: list[str] | None = None,
    meter=None,
) -> tuple[LatencyReport, float | None]:
    """Time `repeats` single-sample calls after `warmup` untimed ones.

    meter: an energy meter read over the timed window; returns its joules as the second value.
    """
    session = ort_session(path, threads=threads, providers=providers)
    feed = {INPUT_NAME: sample}
    for _ in range(warmup):
        session.run(None, feed)
    times = np.empty(repeats)
    if meter is not None:
        meter.start()
    t_window = time.perf_counter()
    for i in range(repeats):
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        times[i] = time.perf_counter_ns() - t0
    window = time.perf_counter() - t_window
    joules = meter.stop() if meter is not None else None
    times /= 1e6
    report = LatencyReport(
        float(np.percentile(times, 50)), float(np.percentile(times, 90)), repeats, warmup, threads, window
    )
    return report, joules
