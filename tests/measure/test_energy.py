"""The energy-meter contract, run against every registered meter (built-in or third-party)."""

from __future__ import annotations

import math
import time

import pytest

from effsearch.measure.energy import SCOPES, energy_source
from effsearch.plugins import plugins_of_kind

METERS = plugins_of_kind("energy_meter")


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def test_the_builtin_meters_are_registered() -> None:
    assert {"estimate", "rapl", "nvml"} <= {p.name for p in METERS}


@pytest.mark.parametrize("info", METERS, ids=[p.name for p in METERS])
def test_meter_declares_the_contract(info) -> None:
    cls = info.obj
    assert cls.kind == "energy_meter"
    assert isinstance(cls.name, str) and cls.name
    assert isinstance(cls.measured, bool)
    assert cls.scope in SCOPES
    reason = cls.unavailable()
    assert reason is None or (isinstance(reason, str) and reason)
    # Only a meter that measures may record its own name as the energy source.
    assert energy_source(cls) == (cls.name if cls.measured else "estimate")


@pytest.mark.parametrize("info", METERS, ids=[p.name for p in METERS])
def test_meter_reads_a_busy_loop(info) -> None:
    reason = info.obj.unavailable()
    if reason is not None:
        pytest.skip(f"{info.name} is not usable here: {reason}")
    meter = info.obj()
    for _ in range(2):  # an instance can be read more than once
        meter.start()
        _busy(0.05)
        joules = meter.stop()
        assert isinstance(joules, (int, float)) and not isinstance(joules, bool)
        assert math.isfinite(joules) and joules >= 0.0
