"""The energy-meter plugin interface: start(), stop() -> joules, a name, and whether it measures."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

__all__ = ["SCOPES", "EnergyMeter", "energy_source"]

SCOPES = ("process", "machine")


class EnergyMeter(ABC):
    """Reads the energy spent between start() and stop().

    name: the plugin's name; trials record it as `energy_source` when the meter measures.
    measured: True when the joules come from a hardware counter or sensor, False for an estimate.
    scope: "process" meters count the calling process only (every rank runs one and the readings are
    summed); "machine" meters read a machine-wide counter (a RAPL package, an NVML device) and are read
    once per training run by the driver.
    priority: among usable measuring meters, the highest is chosen when none is forced.
    """

    kind: ClassVar[str] = "energy_meter"
    name: ClassVar[str]
    measured: ClassVar[bool]
    scope: ClassVar[str] = "process"
    priority: ClassVar[int] = 0

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
