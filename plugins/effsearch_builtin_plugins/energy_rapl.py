"""CPU package and DRAM energy from Linux powercap (Intel/AMD RAPL) counters."""

from __future__ import annotations

import os
from pathlib import Path

from effsearch.measure.energy import EnergyMeter

__all__ = ["RaplMeter", "rapl_zones"]


def _root() -> Path:
    return Path(os.environ.get("EFFSEARCH_POWERCAP_ROOT", "/sys/class/powercap"))


def rapl_zones(root: Path | None = None) -> list[Path]:
    """Top-level package zones and their DRAM subzones (not core/uncore, which the package includes)."""
    root = root or _root()
    zones = []
    for z in sorted(root.glob("intel-rapl:*")):
        if z.name.count(":") == 1:
            zones.append(z)
            zones += [s for s in sorted(z.glob(f"{z.name}:*")) if (s / "name").is_file() and (s / "name").read_text().strip() == "dram"]
    return zones


class RaplMeter(EnergyMeter):
    """Sums the energy_uj counters of every package (and DRAM) zone, handling wrap-around."""

    name = "rapl"
    measured = True
    scope = "machine"
    priority = 10

    @classmethod
    def unavailable(cls) -> str | None:
        root = _root()
        zones = rapl_zones(root)
        if not zones:
            return f"no RAPL zones under {root} (virtual machine, container or non-x86 CPU)"
        for z in zones:
            try:
                int((z / "energy_uj").read_text())
            except PermissionError:
                return f"{z / 'energy_uj'} is not readable (needs root or a udev rule)"
            except (OSError, ValueError) as exc:
                return f"{z / 'energy_uj'} cannot be read: {exc}"
        return None

    def __init__(self, root: Path | None = None) -> None:
        self._zones = rapl_zones(root)
        self._start: list[int] = []

    def _read(self) -> list[int]:
        return [int((z / "energy_uj").read_text()) for z in self._zones]

    def start(self) -> None:
        self._start = self._read()

    def stop(self) -> float:
        total_uj = 0
        for z, a, b in zip(self._zones, self._start, self._read()):
            if b < a:  # the counter wrapped once past max_energy_range_uj
                total_uj += int((z / "max_energy_range_uj").read_text()) - a + b
            else:
                total_uj += b - a
        return total_uj / 1e6
