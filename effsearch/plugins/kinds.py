"""The plugin kinds, each declared by its abstract base: what a plugin of that kind is and must provide.

A plugin is checked against its kind's base (effsearch.plugins.contract): the attributes annotated
here, with their types, and the methods declared here. A subclass inherits the defaults; a class that
does not subclass must provide every one of them itself. A new kind is one more base in `BASES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal, get_args

__all__ = ["BASES", "HARDWARE", "KINDS", "SCOPES", "EnergyMeter", "LatencyTarget", "Plugin", "base_of", "energy_source"]

Scope = Literal["process", "machine"]
Hardware = Literal["cpu", "gpu"]
SCOPES: tuple[str, ...] = get_args(Scope)
HARDWARE: tuple[str, ...] = get_args(Hardware)


class Plugin(ABC):
    """What every kind shares: a kind, a name, a priority, and whether it is usable here.

    name: the plugin's name, unique among installed plugins.
    priority: among usable plugins of a kind, the highest is chosen when none is forced.
    """

    kind: ClassVar[str]
    name: ClassVar[str]
    priority: ClassVar[float] = 0

    @classmethod
    def unavailable(cls) -> str | None:
        """Why the plugin cannot be used on this machine, or None when it can."""
        return None

    @classmethod
    def describe(cls) -> str | None:
        """Optional: what the plugin uses here (zones, devices, a power figure), shown by `effsearch plugins`."""
        return None


class EnergyMeter(Plugin):
    """Reads the energy spent between start() and stop().

    name: trials record it as `energy_source` when the meter measures.
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
    measured: ClassVar[bool]
    scope: ClassVar[Scope] = "process"
    reads: ClassVar[Hardware | None] = None
    min_window_s: ClassVar[float] = 0.0

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def stop(self) -> float:
        """Joules since start()."""

    @property
    def source(self) -> str:
        """The `energy_source` recorded on trials: the meter's name, or `estimate`."""
        return energy_source(type(self))


class LatencyTarget(Plugin):
    """Where latency is measured: onnxruntime providers, in order of preference."""

    kind: ClassVar[str] = "latency_target"

    @abstractmethod
    def providers(self) -> list[str]:
        """onnxruntime providers, in order of preference."""


BASES: tuple[type[Plugin], ...] = (EnergyMeter, LatencyTarget)
KINDS: tuple[str, ...] = tuple(base.kind for base in BASES)


def base_of(kind: object) -> type[Plugin] | None:
    """The base that declares `kind`, or None for a kind effsearch does not know."""
    return next((base for base in BASES if base.kind == kind), None)


def energy_source(meter: Any) -> str:
    """The `energy_source` of a meter class or instance: its name when it measures, else `estimate`."""
    return str(meter.name) if getattr(meter, "measured", False) else "estimate"
