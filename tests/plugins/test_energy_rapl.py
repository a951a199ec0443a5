"""The RAPL meter on fake powercap files laid out like /sys/class/powercap."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from effsearch import plugins
from effsearch_builtin_plugins import energy_rapl
from effsearch_builtin_plugins.energy_rapl import RaplMeter, rapl_zones

RANGE = 262_143_328_850  # a common max_energy_range_uj


def _zone(path: Path, name: str, energy_uj: int) -> Path:
    path.mkdir(parents=True)
    (path / "name").write_text(f"{name}\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{RANGE}\n")
    return path


@pytest.fixture
def powercap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package with core and dram subzones, a psys zone and an MMIO duplicate, as sysfs lists them."""
    root = tmp_path / "powercap"
    pkg = _zone(root / "intel-rapl:0", "package-0", 1_000_000)
    _zone(pkg / "intel-rapl:0:0", "core", 500_000)
    _zone(pkg / "intel-rapl:0:1", "dram", 2_000_000)
    for sub in ("intel-rapl:0:0", "intel-rapl:0:1"):
        (root / sub).symlink_to(pkg / sub)  # sysfs lists subzones at the top level too
    _zone(root / "intel-rapl:1", "psys", 9_000_000)  # the whole platform: would count the package twice
    _zone(root / "intel-rapl-mmio:0", "package-0", 3_000_000)  # the same package through MMIO
    monkeypatch.setenv("EFFSEARCH_POWERCAP_ROOT", str(root))
    return root


def _set(root: Path, zone: str, energy_uj: int) -> None:
    tmp = root / zone / "energy_uj.new"
    tmp.write_text(f"{energy_uj}\n")
    tmp.replace(root / zone / "energy_uj")  # atomic, like a sysfs read: the polling thread never sees half


def test_reads_packages_and_dram_only(powercap: Path) -> None:
    assert [z.label for z in rapl_zones()] == ["package-0", "package-0/dram"]
    assert RaplMeter.unavailable() is None
    assert RaplMeter.describe() == "zones: package-0, package-0/dram"


def test_energy_is_the_sum_of_counter_increments(powercap: Path) -> None:
    meter = RaplMeter()
    meter.start()
    _set(powercap, "intel-rapl:0", 1_000_000 + 12_500_000)
    _set(powercap, "intel-rapl:0/intel-rapl:0:1", 2_000_000 + 1_500_000)
    _set(powercap, "intel-rapl:0/intel-rapl:0:0", 99_000_000)  # core: inside the package already
    _set(powercap, "intel-rapl:1", 99_000_000)  # psys: ignored
    assert meter.stop() == pytest.approx(14.0)


def test_a_counter_that_wraps_is_counted_through_the_wrap(powercap: Path) -> None:
    _set(powercap, "intel-rapl:0", RANGE - 3_000_000)
    meter = RaplMeter()
    meter.start()
    _set(powercap, "intel-rapl:0", 2_000_000)  # went past max_energy_range_uj and restarted at 0
    assert meter.stop() == pytest.approx(5.0)


def test_a_long_window_that_wraps_twice_is_counted_by_polling(powercap: Path) -> None:
    _set(powercap, "intel-rapl:0", RANGE - 1_000_000)
    meter = RaplMeter(poll_s=0.01)
    meter.start()
    for value in (4_000_000, RANGE - 2_000_000, 3_000_000):  # wrap, climb most of the range, wrap again
        _set(powercap, "intel-rapl:0", value)
        time.sleep(0.15)
    joules = meter.stop()
    assert joules == pytest.approx((RANGE + 4_000_000) / 1e6)  # 5e6 + (RANGE - 6e6) + 5e6 uJ


def test_the_meter_can_be_read_again(powercap: Path) -> None:
    meter = RaplMeter()
    for extra in (1_000_000, 3_000_000):
        meter.start()
        _set(powercap, "intel-rapl:0", int((powercap / "intel-rapl:0" / "energy_uj").read_text()) + extra)
        assert meter.stop() == pytest.approx(extra / 1e6)


def test_absent_counters_say_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EFFSEARCH_POWERCAP_ROOT", str(tmp_path / "nowhere"))
    assert "does not exist" in RaplMeter.unavailable()
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("EFFSEARCH_POWERCAP_ROOT", str(tmp_path / "empty"))
    assert RaplMeter.unavailable() == (
        f"no RAPL package zones under {tmp_path / 'empty'} (virtual machines expose none; non-x86 CPUs have none)"
    )


def test_unreadable_counters_say_not_readable_and_how_to_fix(powercap: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counter = powercap / "intel-rapl:0" / "energy_uj"
    if os.geteuid() == 0:  # root reads a mode-000 file: refuse the read the way the kernel would
        real = energy_rapl._read_int

        def refuse(path: Path) -> int:
            if path.name == "energy_uj":
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(energy_rapl, "_read_int", refuse)
    else:
        counter.chmod(0)
    reason = RaplMeter.unavailable()
    assert reason.startswith(f"{counter} is not readable by user")
    assert "chmod a+r" in reason


def test_a_missing_wrap_range_is_reported(powercap: Path) -> None:
    (powercap / "intel-rapl:0" / "intel-rapl:0:1" / "max_energy_range_uj").unlink()
    assert "max_energy_range_uj cannot be read" in RaplMeter.unavailable()


def test_readable_rapl_is_chosen_over_the_estimate(powercap: Path) -> None:
    plugins.reload()
    try:
        chosen = plugins.choose_energy_meter()
        assert chosen.measured and chosen.name in {"rapl", "nvml"}  # nvml outranks rapl where a GPU is
    finally:
        plugins.reload()
