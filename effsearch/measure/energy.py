"""The energy-meter plugin interface: start(), stop() -> joules, a name, and whether it measures."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

__all__ = ["EnergyMeter"]


class EnergyMeter(ABC):
    """Reads the energy spent between start() and stop().

    scope: "process" meters count the calling process only (every rank runs one and the readings are
    summed); "machine" meters read a machine-wide counter (a RAPL package, an NVML device) and are read
    once per training run by the driver.
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

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> float:
        """Joules since start()."""

    @property
    def source(self) -> str:
        """The `energy_source` recorded on trials: the meter's name, or `estimate`."""
        return self.name if self.measured else "estimate"
