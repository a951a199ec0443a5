"""Latency of several models measured together: interleaved blocks, so drift hits every model alike.

On a shared machine latency drifts by up to ~50 % over minutes; figures taken at different moments rank
the moments. Here every model is timed once per block, the order rotated from block to block, and each
model's ratio to a reference model is taken within each block, then the median over blocks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from effsearch.onnx_export import INPUT_NAME
from effsearch.runtime import ort_session

__all__ = ["Interleaved", "measure_interleaved"]


@dataclass(frozen=True)
class Interleaved:
    """One model's figures from an interleaved measurement; ratio: its p50 over the reference's, per block."""

    p50_ms: float
    p90_ms: float
    ratio: float
    ratio_lo: float
    ratio_hi: float


def measure_interleaved(
    paths: dict[str, Path],
    reference: str,
    sample: np.ndarray,
    *,
    threads: int = 1,
    warmup: int = 50,
    blocks: int = 5,
    calls: int = 60,
    providers: list[str] | None = None,
) -> dict[str, Interleaved]:
    """Time every model in `paths` (`reference` among them) at batch 1 in `blocks` interleaved blocks."""
    sessions = {name: ort_session(p, threads=threads, providers=providers) for name, p in paths.items()}
    feed = {INPUT_NAME: sample}
    for session in sessions.values():
        for _ in range(warmup):
            session.run(None, feed)
    names = list(sessions)
    times: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for block in range(blocks):
        shift = block % len(names)
        for name in names[shift:] + names[:shift]:
            session = sessions[name]
            t = np.empty(calls)
            for i in range(calls):
                t0 = time.perf_counter_ns()
                session.run(None, feed)
                t[i] = time.perf_counter_ns() - t0
            times[name].append(t / 1e6)
    ref = [float(np.median(t)) for t in times[reference]]
    out = {}
    for name in names:
        ratios = [float(np.median(t)) / r for t, r in zip(times[name], ref)]
        every = np.concatenate(times[name])
        out[name] = Interleaved(
            float(np.percentile(every, 50)), float(np.percentile(every, 90)),
            float(np.median(ratios)), float(min(ratios)), float(max(ratios)),
        )
    return out
