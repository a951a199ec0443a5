"""The energy-meter contract, run against every registered meter (built-in or third-party)."""

from __future__ import annotations

import math
import time

import pytest

from effsearch.measure.energy import SCOPES, energy_source
from effsearch.plugins import plugins_of_kind

METERS = plugins_of_kind("energy_meter")


def _burn_cpu(seconds: float) -> None:
    """Spend this much CPU time in this process, however long the machine's other load makes it take."""
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
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
    if reason is not None:
        # A meter that cannot be used here says why in words, and refuses to read: it makes no figure up.
        assert isinstance(reason, str) and reason.strip(), repr(reason)
        with pytest.raises(Exception):
            meter = cls()
            meter.start()
            meter.stop()
    # Only a meter that measures may record its own name as the energy source.
    assert energy_source(cls) == (cls.name if cls.measured else "estimate")


@pytest.mark.parametrize("info", METERS, ids=[p.name for p in METERS])
def test_meter_reads_more_for_more_work(info) -> None:
    """Over a window of real CPU work a meter reads a positive figure, and more for four times the work."""
    reason = info.obj.unavailable()
    if reason is not None:
        pytest.skip(f"{info.name} is not usable here: {reason}")
    meter = info.obj()
    readings = []
    for seconds in (0.2, 0.8):  # one instance, read twice
        meter.start()
        _burn_cpu(seconds)
        joules = meter.stop()
        assert isinstance(joules, (int, float)) and not isinstance(joules, bool)
        assert math.isfinite(joules), f"{info.name} read {joules} J"
        readings.append(joules)
    short, long = readings
    assert short > 0.0, f"{info.name} read {short} J over 0.2 s of CPU work"
    assert long > short, f"{info.name} read {long} J for 0.8 s of CPU work, not more than {short} J for 0.2 s"
