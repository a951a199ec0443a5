"""The energy-meter plugin interface: start(), stop() -> joules, a name, and whether it measures."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

__all__ = ["HARDWARE", "SCOPES", "EnergyMeter", "energy_source", "meter_reads"]

SCOPES = ("process", "machine")
HARDWARE = ("cpu", "gpu")


class EnergyMeter(ABC):
    """Reads the energy spent between start() and stop().

    name: the plugin's name; trials record it as `energy_source` when the meter measures.
    measured: True when the joules come from a hardware counter or sensor, False for an estimate.
    scope: "process" meters count the calling process only (every rank runs one and the readings are
    summed); "machine" meters read a machine-wide counter (a RAPL package, an NVML device) and are read
    once per training run, by rank 0. Both are read over the same window: the training steps.
    priority: among usable measuring meters, the highest is chosen when none is forced.
    reads: what the meter counts, "cpu" or "gpu"; inference energy is read with a meter that reads what
    the latency target runs on. None (the default) means "cpu" for a process-scope meter (it counts its
    own process's work) and unknown for a machine-scope one, which is then not used for inference.
    min_window_s: the shortest window the meter reads well (its counters' update period and resolution
    make shorter ones coarse); inference energy is read over at least this long, and never under 0.05 s.
    """

    kind: ClassVar[str] = "energy_meter"
    name: ClassVar[str]
    measured: ClassVar[bool]
    scope: ClassVar[str] = "process"
    priority: ClassVar[int] = 0
    reads: ClassVar[str | None] = None
    min_window_s: ClassVar[float] = 0.0

    @classmethod
    def unavailable(cls) -> str | None:
        """Why the meter cannot be used on this machine, or None when it can."""
        return None

    @classmethod
    def describe(cls) -> str | None:
        """Optional: what the meter reads here (zones, devices, the power figure), shown by `effsearch plugins`."""
        return None

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> float:
        """Joules since start()."""

    @property
    def source(self) -> str:
        """The `energy_source` recorded on trials: the meter's name, or `estimate`."""
        return energy_source(type(self))


def energy_source(meter: Any) -> str:
    """The `energy_source` of a meter class or instance: its name when it measures, else `estimate`."""
    return str(meter.name) if getattr(meter, "measured", False) else "estimate"


def meter_reads(meter: Any) -> str | None:
    """What a meter class or instance counts: "cpu", "gpu", or None where it does not say (see EnergyMeter.reads)."""
    reads = getattr(meter, "reads", None)
    if reads in HARDWARE:
        return str(reads)
    return "cpu" if getattr(meter, "scope", None) == "process" else None
