"""Latency of several models measured together, in interleaved blocks, until the figures are stable.

Every model is timed once per block, the order rotated from block to block, so that drift of a shared
machine hits all alike; each model's ratio to a reference is taken within each block. Blocks are added
until every model's ratio is known to a stated relative width (the spread of its per-block ratios,
interquartile, over their median), or a cap on blocks or seconds is reached. A block's calls are sized
to the model, so that a 20 µs and a 20 ms model both get a stable figure in bounded time.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from effsearch.onnx_export import INPUT_NAME
from effsearch.runtime import ort_session

__all__ = ["PROTOCOL", "Timed", "measure_blocks"]

# The adaptive protocol, recorded wherever its figures are stored.
PROTOCOL = {
    "warmup_calls": 50,
    "block_s": 0.01,  # each model's calls in one block last about this long
    "min_calls": 5,
    "min_blocks": 5,
    "max_blocks": 30,
    "max_s": 4.0,
    "rel_width": 0.05,  # stop once every ratio's interquartile spread / median is at most this
    "statistic": "median of per-block medians; ratio: median of per-block ratios to the reference",
}


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
    """Time every model in `paths` (`reference` among them) at batch 1, interleaved, until stable."""
    sessions = {key: ort_session(p, threads=threads, providers=providers) for key, p in paths.items()}
    feed = {INPUT_NAME: sample}
    calls = {}
    for key, session in sessions.items():
        t0 = time.perf_counter()
        for _ in range(protocol["warmup_calls"]):
            session.run(None, feed)
        per_call = (time.perf_counter() - t0) / protocol["warmup_calls"]
        calls[key] = max(protocol["min_calls"], math.ceil(protocol["block_s"] / max(per_call, 1e-7)))
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
            for key in keys[shift:] + keys[:shift]:
                session, n = sessions[key], calls[key]
                t = np.empty(n)
                for i in range(n):
                    t0 = time.perf_counter_ns()
                    session.run(None, feed)
                    t[i] = time.perf_counter_ns() - t0
                t /= 1e6
                every[key].append(t)
                medians[key].append(float(np.median(t)))
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
