"""Latency (and inference energy, where a meter measures it) of several models measured together, in
interleaved blocks, until the figures are stable.

Within a block the models take turns: rounds in which every model runs a short chunk of calls (about
0.5 ms of them, at least one call), in an order rotated from block to block, so that drift of a shared
machine hits all alike down to the millisecond; each model's ratio to a reference is taken within each
block. On this shared 2-core machine that cut the spread of per-block ratios from 6-12 % (each model's
10 ms of calls in one stretch) to 1-3.5 %. The first call of a chunk can meet caches another model
filled; the median over the block's calls is the figure. Blocks are added until every model's ratio is
known to a stated relative width (the spread of its per-block ratios, interquartile, over their median),
or a cap on blocks or seconds is reached. Chunks and rounds are sized to the models, so that a 20 µs and
a 20 ms model both get a stable figure in bounded time.

Energy is read the same way where a hardware meter reads it: repeated windows, every model once per round
in a rotated order, each window as long as the meter reads well; the median per call and the interval of
the windows. An estimate (CPU seconds x a power figure) is not repeated: its spread would only be that of
the CPU time, and it stays labelled an estimate.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from effsearch.inputs import feed_len, for_session
from effsearch.measure.latency import energy_window
from effsearch.runtime import ort_session

__all__ = ["ENERGY_PROTOCOL", "PROTOCOL", "Metered", "Timed", "measure_blocks", "measure_energy"]

# The adaptive protocol, recorded wherever its figures are stored.
PROTOCOL = {
    "warmup_calls": 50,
    "block_s": 0.01,  # each model's calls in one block last about this long (the slowest's: at least min_calls)
    "chunk_s": 0.0005,  # a model's turn within a round: about this long, at least one call
    "min_calls": 5,
    "min_blocks": 5,
    "max_blocks": 30,
    "max_s": 4.0,
    "rel_width": 0.05,  # stop once every ratio's interquartile spread / median is at most this
    "statistic": "median of per-block medians; ratio: median of per-block ratios to the reference",
}


# Inference energy re-measured with a hardware meter: `windows` rounds, each window at least `window_s`
# (or the meter's min_window_s, if longer), with at most `max_s` spent in all.
ENERGY_PROTOCOL = {"windows": 5, "window_s": 0.05, "max_s": 10.0}


@dataclass(frozen=True)
class Metered:
    """One model's inference energy per call: the median of its windows and their interquartile interval."""

    mj: float
    lo_mj: float
    hi_mj: float
    windows: int

    def to_dict(self) -> dict[str, Any]:
        return {"energy_mj": self.mj, "energy_lo_mj": self.lo_mj, "energy_hi_mj": self.hi_mj, "energy_windows": self.windows}


@dataclass(frozen=True)
class Timed:
    """One model's figures: median latency and the interval of its block medians; the same for its ratio."""

    p50_ms: float
    p90_ms: float
    lo_ms: float
    hi_ms: float
    ratio: float
    ratio_lo: float
    ratio_hi: float
    ratio_cv: float  # standard deviation of the per-block ratios over their mean
    blocks: int
    calls: int

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _width(ratios: list[float]) -> float:
    q25, q50, q75 = np.percentile(ratios, [25, 50, 75])
    return float((q75 - q25) / q50) if q50 > 0 else math.inf


def measure_blocks(
    paths: dict[Any, Path],
    reference: Any,
    sample: np.ndarray,
    *,
    threads: int = 1,
    providers: list[str] | None = None,
    protocol: dict[str, Any] = PROTOCOL,
) -> dict[Any, Timed]:
    """Time every model in `paths` (`reference` among them) at the sample's batch, interleaved, until stable."""
    sessions = {key: ort_session(p, threads=threads, providers=providers) for key, p in paths.items()}
    feeds = {key: for_session(s, sample) for key, s in sessions.items()}
    chunk, per_call = {}, {}
    for key, session in sessions.items():
        t0 = time.perf_counter()
        for _ in range(protocol["warmup_calls"]):
            session.run(None, feeds[key])
        per_call[key] = max((time.perf_counter() - t0) / protocol["warmup_calls"], 1e-7)
        chunk[key] = max(1, round(protocol.get("chunk_s", 0.0) / per_call[key]))
    # Rounds per block: every model's calls last about block_s, the slowest's at least min_calls.
    turn = max(chunk[k] * per_call[k] for k in sessions)
    rounds = max(math.ceil(protocol["min_calls"] / min(chunk.values())), math.ceil(protocol["block_s"] / turn))
    keys = list(sessions)
    medians: dict[Any, list[float]] = {k: [] for k in keys}
    every: dict[Any, list[np.ndarray]] = {k: [] for k in keys}
    start = time.perf_counter()
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a timed call is a moment's figure, not the model's
    try:
        for block in range(protocol["max_blocks"]):
            shift = block % len(keys)
            order = keys[shift:] + keys[:shift]
            t = {k: np.empty(rounds * chunk[k]) for k in keys}
            for r in range(rounds):
                for key in order:
                    session, n, times, feed = sessions[key], chunk[key], t[key], feeds[key]
                    for i in range(r * n, (r + 1) * n):
                        t0 = time.perf_counter_ns()
                        session.run(None, feed)
                        times[i] = time.perf_counter_ns() - t0
            for key in keys:
                every[key].append(t[key] / 1e6)
                medians[key].append(float(np.median(every[key][-1])))
            ratios = {k: [m / r for m, r in zip(medians[k], medians[reference])] for k in keys}
            done = block + 1 >= protocol["min_blocks"] and all(_width(ratios[k]) <= protocol["rel_width"] for k in keys)
            if done or time.perf_counter() - start > protocol["max_s"]:
                break
    finally:
        if was_enabled:
            gc.enable()
    out = {}
    for key in keys:
        med, r = medians[key], ratios[key]
        all_calls = np.concatenate(every[key])
        out[key] = Timed(
            p50_ms=float(np.median(med)), p90_ms=float(np.percentile(all_calls, 90)),
            lo_ms=float(np.percentile(med, 25)), hi_ms=float(np.percentile(med, 75)),
            ratio=float(np.median(r)), ratio_lo=float(np.percentile(r, 25)), ratio_hi=float(np.percentile(r, 75)),
            ratio_cv=float(np.std(r) / np.mean(r)),
            blocks=len(med), calls=int(sum(len(t) for t in every[key])),
        )
    return out


def measure_energy(paths: dict[Any, Path], sample: np.ndarray, meter_cls: Any, *, protocol: dict[str, Any] = ENERGY_PROTOCOL,
                   **session: Any) -> dict[Any, Metered]:
    """Millijoules per batch-1 call of every model, read with `meter_cls` over repeated interleaved windows.

    session: ort_session's threads and providers, as for measure_blocks.
    """
    sessions = {key: ort_session(p, **session) for key, p in paths.items()}
    feeds = {key: for_session(s, sample) for key, s in sessions.items()}
    window_s = max(float(protocol["window_s"]), float(getattr(meter_cls, "min_window_s", 0.0) or 0.0))
    rounds = max(1, min(int(protocol["windows"]), int(protocol["max_s"] / (window_s * max(1, len(sessions))))))
    keys = list(sessions)
    readings: dict[Any, list[float]] = {k: [] for k in keys}
    for key, session in sessions.items():
        for _ in range(PROTOCOL["warmup_calls"]):
            session.run(None, feeds[key])
    for r in range(rounds):
        shift = r % len(keys)
        for key in keys[shift:] + keys[:shift]:
            joules, calls, _ = energy_window(sessions[key], feeds[key], meter_cls(), window_s)
            readings[key].append(joules / (calls * feed_len(sample)) * 1e3)  # per sample
    return {
        k: Metered(float(np.median(v)), float(np.percentile(v, 25)), float(np.percentile(v, 75)), len(v))
        for k, v in readings.items()
    }
