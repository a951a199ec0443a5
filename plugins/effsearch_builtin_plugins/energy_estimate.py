"""An energy estimate from CPU time: seconds of CPU x a per-core power figure. Never a measurement."""

from __future__ import annotations

import functools
import math
import os
import time
from pathlib import Path

from effsearch.errors import PluginError
from effsearch.host import cpu_model
from effsearch.plugins import EnergyMeter

__all__ = ["EstimateMeter", "power_figure", "threads_per_core", "watts_per_core"]

# Busy-core power of broad CPU families: a representative part's TDP divided by its physical cores, as
# Green Algorithms does. Coarse by design (the figure is labelled an estimate); first match wins.
CORE_WATTS = (
    ("EPYC", 4.4, "AMD EPYC 7763: 280 W / 64 cores"),
    ("Xeon", 6.8, "Intel Xeon Platinum 8380: 270 W / 40 cores"),
    ("Ryzen", 6.6, "AMD Ryzen 9 5950X: 105 W / 16 cores"),
    ("Core(TM) i", 10.4, "Intel Core i7-12700K: 125 W / 12 cores"),
)
DEFAULT_WATTS_PER_CORE = 10.0

WATTS_ENV = "EFFSEARCH_CPU_WATTS_PER_CORE"
# Where Linux describes the CPU topology (a test points it at a made-up one).
SYS_CPU = Path("/sys/devices/system/cpu")
TDP_ENV = "EFFSEARCH_CPU_TDP_W"


def _positive(env: str) -> float:
    raw = os.environ[env]
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise PluginError(f"{env}={raw!r} is not a positive number of watts; set e.g. {env}=10 or unset it")
    return value


@functools.cache
def _table_figure(model: str) -> tuple[float, str]:
    for pattern, watts, basis in CORE_WATTS:
        if pattern in model:
            return watts, f"{pattern} in the table, as {basis}"
    return DEFAULT_WATTS_PER_CORE, f"default for a CPU not in the table ({model or 'unknown'})"


def threads_per_core() -> int:
    """Hardware threads per physical core (2 with SMT), from cpu0's siblings; 1 where Linux does not say."""
    try:
        siblings = (SYS_CPU / "cpu0" / "topology" / "thread_siblings_list").read_text().strip()
    except OSError:
        return 1
    count = 0
    for part in siblings.split(","):
        lo, _, hi = part.partition("-")
        try:
            count += int(hi) - int(lo) + 1 if hi else 1
        except ValueError:
            return 1
    return max(1, count)


def power_figure() -> tuple[float, str]:
    """Watts per busy hardware thread (what a CPU second is counted on) and where the figure comes from.

    EFFSEARCH_CPU_WATTS_PER_CORE wins, then EFFSEARCH_CPU_TDP_W divided by os.cpu_count() (logical CPUs),
    then the small table of CPU families, then 10 W. A per-core figure is shared by the core's hardware
    threads: with SMT two busy threads of one core draw about one core's power, not two. Raises
    PluginError for a setting that is not a positive number.
    """
    if os.environ.get(TDP_ENV) and not os.environ.get(WATTS_ENV):
        cpus = os.cpu_count() or 1
        return _positive(TDP_ENV) / cpus, f"{TDP_ENV} / {cpus} logical CPUs"
    watts, basis = (_positive(WATTS_ENV), WATTS_ENV) if os.environ.get(WATTS_ENV) else _table_figure(cpu_model())
    smt = threads_per_core()
    if smt > 1:
        return watts / smt, f"{basis}, shared by {smt} hardware threads per core (SMT)"
    return watts, basis


def watts_per_core() -> float:
    """The power figure the estimate multiplies CPU seconds by (see power_figure)."""
    return power_figure()[0]


class EstimateMeter(EnergyMeter):
    """CPU seconds of this process (all its threads) times watts per busy hardware thread: an estimate."""

    name = "estimate"
    measured = False
    scope = "process"
    priority = 0

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            power_figure()
        except PluginError as exc:
            return str(exc)
        return None

    @classmethod
    def describe(cls) -> str | None:
        watts, basis = power_figure()
        unit = "hardware thread" if threads_per_core() > 1 else "core"
        return f"CPU seconds x {watts:g} W per {unit} ({basis})"

    def __init__(self) -> None:
        self._t0: float | None = None
        self._watts = watts_per_core()

    def start(self) -> None:
        self._t0 = time.process_time()

    def stop(self) -> float:
        if self._t0 is None:
            raise RuntimeError("EstimateMeter.stop() called before start()")
        cpu_s = time.process_time() - self._t0
        self._t0 = None
        return max(0.0, cpu_s) * self._watts
