"""CPU package and DRAM energy from Linux powercap (Intel/AMD RAPL) counters.

Each package zone `intel-rapl:N` and its `dram` subzone have an `energy_uj` counter that wraps to zero
past `max_energy_range_uj`. Core, uncore and psys zones are left out: the first two are part of the
package, psys (the whole platform) would count the package twice. EFFSEARCH_POWERCAP_ROOT replaces
/sys/class/powercap (tests point it at fake files).
"""

from __future__ import annotations

import getpass
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from effsearch.plugins import EnergyMeter

__all__ = ["RaplMeter", "Zone", "rapl_zones"]

ROOT_ENV = "EFFSEARCH_POWERCAP_ROOT"
DEFAULT_ROOT = "/sys/class/powercap"


def _root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def _zone_name(path: Path) -> str:
    try:
        return (path / "name").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Zone:
    path: Path
    label: str  # "package-0", "package-0/dram"


def rapl_zones(root: Path | None = None) -> list[Zone]:
    """Top-level package zones and their DRAM subzones, in a stable order."""
    root = root or _root()
    zones = []
    for z in sorted(root.glob("intel-rapl:*")):
        if z.name.count(":") != 1 or _zone_name(z) == "psys":
            continue  # subzones are listed at the top level too; they are taken from their package below
        package = _zone_name(z) or z.name
        zones.append(Zone(z, package))
        zones += [Zone(s, f"{package}/dram") for s in sorted(z.glob(f"{z.name}:*")) if _zone_name(s) == "dram"]
    return zones


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry for this uid (some containers)
        return f"uid {os.getuid()}"


def _unreadable(path: Path, exc: Exception, root: Path) -> str:
    if isinstance(exc, PermissionError):
        return (
            f"{path} is not readable by user {_user()} (Linux allows only root since 5.10); "
            f"run as root, or make it readable: sudo chmod a+r {root}/intel-rapl:*/energy_uj "
            "(a udev rule keeps it across reboots)"
        )
    return f"{path} cannot be read: {type(exc).__name__}: {exc}"


class RaplMeter(EnergyMeter):
    """Sums the energy_uj counters of every package (and DRAM) zone, handling wrap-around.

    A background thread reads the counters every poll_s seconds during long windows, so a counter that
    wraps more than once between start() and stop() is still counted (a package wraps every few minutes
    at full power on some parts).
    """

    name = "rapl"
    measured = True
    scope = "machine"
    priority = 10
    reads = "cpu"
    min_window_s = 0.2  # the package counter updates about every 1 ms: 0.2 s reads it to ~0.5 %

    @classmethod
    def unavailable(cls) -> str | None:
        root = _root()
        if not root.is_dir():
            return f"{root} does not exist (no powercap driver: a virtual machine, a container without /sys, or not Linux)"
        zones = rapl_zones(root)
        if not zones:
            return f"no RAPL package zones under {root} (virtual machines expose none; non-x86 CPUs have none)"
        for z in zones:
            for file in ("energy_uj", "max_energy_range_uj"):
                try:
                    _read_int(z.path / file)
                except (OSError, ValueError) as exc:
                    return _unreadable(z.path / file, exc, root)
        return None

    @classmethod
    def describe(cls) -> str | None:
        zones = rapl_zones()
        return ("zones: " + ", ".join(z.label for z in zones)) if zones else None

    def __init__(self, root: Path | None = None, poll_s: float = 10.0) -> None:
        self._zones = rapl_zones(root)
        if not self._zones:
            raise RuntimeError(f"no RAPL package zones under {root or _root()}")
        self._ranges = [_read_int(z.path / "max_energy_range_uj") for z in self._zones]
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._last: list[int] = []
        self._total_uj = 0
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> list[int]:
        return [_read_int(z.path / "energy_uj") for z in self._zones]

    def _advance(self) -> None:
        """Add what every counter moved since the last read; a counter that went down wrapped once."""
        now = self._read()
        with self._lock:
            for a, b, span in zip(self._last, now, self._ranges, strict=True):
                self._total_uj += b - a if b >= a else span - a + b
            self._last = now

    def _poll(self) -> None:
        while not self._stop_event.wait(self._poll_s):
            try:
                self._advance()
            except (OSError, ValueError):
                pass  # the final read in stop() reports a persistent failure

    def start(self) -> None:
        self._stop_poll()
        self._last = self._read()
        self._total_uj = 0
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="effsearch-rapl-poll")
        self._thread.start()

    def _stop_poll(self) -> None:
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def stop(self) -> float:
        if not self._last:
            raise RuntimeError("RaplMeter.stop() called before start()")
        self._stop_poll()
        self._advance()
        self._last = []
        return self._total_uj / 1e6
