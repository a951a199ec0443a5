"""onnxruntime latency of one call at the sample's batch: fixed threads, warm-up, median of many calls."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from effsearch.inputs import for_session
from effsearch.runtime import ort_session

__all__ = ["LatencyReport", "energy_window", "measure_latency"]


@dataclass(frozen=True)
class LatencyReport:
    """The timed calls' percentiles; energy_calls and energy_window_s: the energy window, where one was read."""

    p50_ms: float
    p90_ms: float
    repeats: int
    warmup: int
    threads: int
    window_s: float
    energy_calls: int = 0
    energy_window_s: float = 0.0


def energy_window(session, feed: dict, meter, window_s: float) -> tuple[float, int, float]:
    """Read `meter` over calls repeated until they last `window_s` (at least one): (joules, calls, seconds)."""
    calls = 0
    meter.start()
    t0 = time.perf_counter()
    while calls == 0 or time.perf_counter() - t0 < window_s:
        session.run(None, feed)
        calls += 1
    seconds = time.perf_counter() - t0
    return float(meter.stop()), calls, seconds


def measure_latency(
    path: Path,
    sample: np.ndarray,
    threads: int = 1,
    warmup: int = 50,
    repeats: int = 300,
    providers: list[str] | None = None,
    meter=None,
    energy_window_s: float = 0.5,
) -> tuple[LatencyReport, float | None]:
    """Time `repeats` single-sample calls after `warmup` untimed ones; then read the meter over calls of its own.

    meter: an energy meter read over a window after the timed calls, whose calls repeat until it lasts at
    least energy_window_s: the timed calls alone (about 10 ms for a small model) are shorter than most
    counters' update period. Returns its joules as the second value (None without a meter); divide by
    report.energy_calls for joules per call.
    """
    session = ort_session(path, threads=threads, providers=providers)
    feed = for_session(session, sample)
    for _ in range(warmup):
        session.run(None, feed)
    times = np.empty(repeats)
    t_window = time.perf_counter()
    for i in range(repeats):
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        times[i] = time.perf_counter_ns() - t0
    window = time.perf_counter() - t_window
    joules, calls, energy_s = None, 0, 0.0
    if meter is not None:
        joules, calls, energy_s = energy_window(session, feed, meter, energy_window_s)
    times /= 1e6
    report = LatencyReport(
        float(np.percentile(times, 50)), float(np.percentile(times, 90)), repeats, warmup, threads, window,
        energy_calls=calls, energy_window_s=energy_s,
    )
    return report, joules
