"""The CPU-time estimate: its power figure, what it counts, and that it never passes for a measurement."""

from __future__ import annotations

import os
import time

import pytest

from effsearch.errors import PluginError
from effsearch.measure.energy import energy_source
from effsearch_builtin_plugins import energy_estimate
from effsearch_builtin_plugins.energy_estimate import EstimateMeter, power_figure


def _topology(root, siblings: str):
    """A made-up /sys/devices/system/cpu whose cpu0 shares its core with `siblings`."""
    folder = root / "cpu0" / "topology"
    folder.mkdir(parents=True)
    (folder / "thread_siblings_list").write_text(siblings + "\n")
    return root


@pytest.fixture(autouse=True)
def no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("EFFSEARCH_CPU_WATTS_PER_CORE", raising=False)
    monkeypatch.delenv("EFFSEARCH_CPU_TDP_W", raising=False)
    # One hardware thread per core unless a test says otherwise, whatever this machine's topology.
    monkeypatch.setattr(energy_estimate, "SYS_CPU", _topology(tmp_path / "no-smt", "0"))


@pytest.mark.parametrize(("siblings", "threads"), [("0", 1), ("0,64", 2), ("0-1", 2), ("0-3", 4)])
def test_with_smt_a_cores_power_is_shared_by_its_hardware_threads(monkeypatch, tmp_path, siblings, threads) -> None:
    monkeypatch.setattr(energy_estimate, "cpu_model", lambda: "AMD EPYC 7763 64-Core Processor")
    monkeypatch.setattr(energy_estimate, "SYS_CPU", _topology(tmp_path / "smt", siblings))
    assert energy_estimate.threads_per_core() == threads
    # CPU seconds count each hardware thread: two busy threads of one core are one core's power, not two.
    assert power_figure()[0] == pytest.approx(4.4 / threads)
    meter = EstimateMeter()
    meter.start()
    _burn_cpu(0.2)
    joules = meter.stop()
    assert 0.2 * 4.4 / threads <= joules <= 0.4 * 4.4 / threads
    assert ("per hardware thread" in EstimateMeter.describe()) == (threads > 1)
    monkeypatch.setenv("EFFSEARCH_CPU_TDP_W", "256")  # a TDP is divided by logical CPUs already: no SMT factor
    assert power_figure()[0] == pytest.approx(256 / (os.cpu_count() or 1))


def _burn_cpu(seconds: float) -> None:
    """Spend this much CPU time, however long the machine's other load makes it take."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_it_is_labelled_an_estimate() -> None:
    assert EstimateMeter.measured is False
    assert energy_source(EstimateMeter) == "estimate"
    assert EstimateMeter().source == "estimate"


def test_cpu_seconds_times_the_configured_watts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EFFSEARCH_CPU_WATTS_PER_CORE", "20")
    meter = EstimateMeter()
    c0 = time.process_time()
    meter.start()
    _burn_cpu(0.2)
    joules = meter.stop()
    cpu = time.process_time() - c0
    assert 20 * 0.2 <= joules <= 20 * cpu + 1e-9


def test_waiting_costs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EFFSEARCH_CPU_WATTS_PER_CORE", "20")
    meter = EstimateMeter()
    meter.start()
    time.sleep(0.2)
    assert meter.stop() < 20 * 0.02  # CPU time, not wall time


def test_power_figure_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(energy_estimate, "cpu_model", lambda: "Intel(R) Xeon(R) Platinum 8380 CPU @ 2.30GHz")
    assert power_figure()[0] == 6.8
    monkeypatch.setattr(energy_estimate, "cpu_model", lambda: "Some Future CPU")
    assert power_figure()[0] == energy_estimate.DEFAULT_WATTS_PER_CORE
    monkeypatch.setenv("EFFSEARCH_CPU_TDP_W", "160")
    assert power_figure() == (160 / (os.cpu_count() or 1), f"EFFSEARCH_CPU_TDP_W / {os.cpu_count()} logical CPUs")
    monkeypatch.setenv("EFFSEARCH_CPU_WATTS_PER_CORE", "7.5")
    assert power_figure() == (7.5, "EFFSEARCH_CPU_WATTS_PER_CORE")
    assert "7.5 W per core" in EstimateMeter.describe()


@pytest.mark.parametrize("value", ["abc", "-3", "0", "nan"])
def test_a_bad_setting_makes_it_unusable_with_the_fix(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("EFFSEARCH_CPU_WATTS_PER_CORE", value)
    reason = EstimateMeter.unavailable()
    assert reason == (
        f"EFFSEARCH_CPU_WATTS_PER_CORE={value!r} is not a positive number of watts; "
        "set e.g. EFFSEARCH_CPU_WATTS_PER_CORE=10 or unset it"
    )
    with pytest.raises(PluginError):
        EstimateMeter()
