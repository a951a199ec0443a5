"""The CPU-time estimate: its power figure, what it counts, and that it never passes for a measurement."""

from __future__ import annotations

import os
import time

import pytest

from effsearch.errors import PluginError
from effsearch.measure.energy import energy_source
from effsearch_builtin_plugins import energy_estimate
from effsearch_builtin_plugins.energy_estimate import EstimateMeter, power_figure


@pytest.fixture(autouse=True)
def no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EFFSEARCH_CPU_WATTS_PER_CORE", raising=False)
    monkeypatch.delenv("EFFSEARCH_CPU_TDP_W", raising=False)


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
