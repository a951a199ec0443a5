"""Energy meters as the measurement code reads them; the base itself is declared with the other plugin kinds."""

from __future__ import annotations

from typing import Any

from effsearch.plugins.kinds import HARDWARE, SCOPES, EnergyMeter, energy_source

__all__ = ["HARDWARE", "SCOPES", "EnergyMeter", "energy_source", "meter_reads"]


def meter_reads(meter: Any) -> str | None:
    """What a meter class or instance counts: "cpu", "gpu", or None where it does not say (see EnergyMeter.reads)."""
    reads = getattr(meter, "reads", None)
    if reads in HARDWARE:
        return str(reads)
    return "cpu" if getattr(meter, "scope", None) == "process" else None
