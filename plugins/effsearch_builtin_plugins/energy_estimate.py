"""An energy estimate from CPU time: seconds of CPU x a per-core power figure. Never a measurement."""

from __future__ import annotations

import os
import time

from effsearch.measure.energy import EnergyMeter

__all__ = ["EstimateMeter", "watts_per_core"]

# Typical busy-core power of server and desktop x86 parts (package TDP / cores), in watts.
DEFAULT_WATTS_PER_CORE = 10.0


def watts_per_core() -> float:
    """EFFSEARCH_CPU_WATTS_PER_CORE, else EFFSEARCH_CPU_TDP_W divided by the cores, else 10 W."""
    if v := os.environ.get("EFFSEARCH_CPU_WATTS_PER_CORE"):
        return float(v)
    if v := os.environ.get("EFFSEARCH_CPU_TDP_W"):
        return float(v) / (os.cpu_count() or 1)
    return DEFAULT_WATTS_PER_CORE


class EstimateMeter(EnergyMeter):
    """CPU seconds of this process (all its threads) times watts per busy core."""

    name = "estimate"
    measured = False
    scope = "process"
    priority = 0

    def __init__(self) -> None:
        self._t0: float | None = None
        self._watts = watts_per_core()

    def start(self) -> None:
        self._t0 = time.process_time()

    def stop(self) -> float:
        if self._t0 is None:
            raise RuntimeError("stop() before start()")
        cpu_s = time.process_time() - self._t0
        self._t0 = None
        return cpu_s * self._watts
