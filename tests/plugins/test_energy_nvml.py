"""The NVML meter against a fake pynvml: the energy counter, the power-sampling fallback, visible devices."""

from __future__ import annotations

import sys
import time
import types

import pytest

from effsearch_builtin_plugins import energy_nvml
from effsearch_builtin_plugins.energy_nvml import NvmlMeter


class NotSupported(Exception):
    pass


def fake_pynvml(
    energy_mj: list[int] | None,
    watts: list[float],
    init_error: Exception | None = None,
    instant_watts: list[float] | None = None,
) -> types.ModuleType:
    """A pynvml with len(watts) GPUs; energy_mj None means GPUs without the total-energy counter.

    watts: what nvmlDeviceGetPowerUsage reports; instant_watts: the instantaneous-power field, which
    older drivers lack (None).
    """
    nv = types.ModuleType("pynvml")
    uuids = [f"GPU-{i}a2b3c4d-0000-0000-0000-00000000000{i}" for i in range(len(watts))]

    def init() -> None:
        if init_error is not None:
            raise init_error

    def energy(h: int) -> int:
        if energy_mj is None:
            raise NotSupported("Not Supported")
        return energy_mj[h]

    nv.nvmlInit = init
    nv.nvmlDeviceGetCount = lambda: len(watts)
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetUUID = lambda h: uuids[h]
    nv.nvmlDeviceGetTotalEnergyConsumption = energy
    nv.nvmlDeviceGetPowerUsage = lambda h: int(watts[h] * 1000)
    nv.NVML_FI_DEV_POWER_INSTANT = 186

    def field_values(h: int, fields: list[int]) -> list[types.SimpleNamespace]:
        if instant_watts is None:
            return [types.SimpleNamespace(nvmlReturn=2, value=types.SimpleNamespace(uiVal=0)) for _ in fields]
        return [types.SimpleNamespace(nvmlReturn=0, value=types.SimpleNamespace(uiVal=int(instant_watts[h] * 1000)))]

    nv.nvmlDeviceGetFieldValues = field_values
    return nv


@pytest.fixture
def install(monkeypatch: pytest.MonkeyPatch):
    """Put a fake pynvml in place of the real one (or none: None)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def put(module: types.ModuleType | None) -> None:
        monkeypatch.setitem(sys.modules, "pynvml", module)
        energy_nvml._nvml.cache_clear()

    yield put
    energy_nvml._nvml.cache_clear()


def test_counter_energy_of_every_visible_gpu(install) -> None:
    counters = [1_000_000, 5_000_000]
    install(fake_pynvml(counters, [100.0, 100.0]))
    assert NvmlMeter.unavailable() is None
    assert NvmlMeter.describe() == "GPU 0, 1: energy counter"
    meter = NvmlMeter()
    meter.start()
    counters[0] += 30_000  # mJ
    counters[1] += 12_500
    assert meter.stop() == pytest.approx(42.5)


@pytest.mark.parametrize(
    ("visible", "expected_j"),
    [("1", 2.0), ("GPU-1a2b", 2.0), ("1,0", 3.0), ("0,bogus,1", 1.0)],  # CUDA stops at the first bad entry
)
def test_cuda_visible_devices_picks_the_gpus(install, monkeypatch: pytest.MonkeyPatch, visible: str, expected_j: float) -> None:
    counters = [0, 0]
    install(fake_pynvml(counters, [100.0, 100.0]))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    meter = NvmlMeter()
    meter.start()
    counters[0] += 1000
    counters[1] += 2000
    assert meter.stop() == pytest.approx(expected_j)


def test_power_sampling_where_the_counter_is_missing(install) -> None:
    install(fake_pynvml(None, [150.0, 50.0]))
    assert NvmlMeter.unavailable() is None
    assert "power sampled" in NvmlMeter.describe()
    meter = NvmlMeter(sample_interval_s=0.01)
    t0 = time.perf_counter()
    meter.start()
    time.sleep(0.3)
    joules = meter.stop()
    window = time.perf_counter() - t0
    assert 200.0 * 0.3 <= joules <= 200.0 * window


def test_power_sampling_prefers_instantaneous_power(install) -> None:
    # Recent drivers average nvmlDeviceGetPowerUsage over a second; the instant field follows bursts.
    install(fake_pynvml(None, [100.0], instant_watts=[300.0]))
    meter = NvmlMeter(sample_interval_s=0.01)
    t0 = time.perf_counter()
    meter.start()
    time.sleep(0.2)
    joules = meter.stop()
    assert 300.0 * 0.2 <= joules <= 300.0 * (time.perf_counter() - t0)


def test_why_nvml_is_not_usable(install, monkeypatch: pytest.MonkeyPatch) -> None:
    install(None)  # `import pynvml` fails
    assert "pip install 'effsearch[nvml]'" in NvmlMeter.unavailable()
    install(fake_pynvml([0], [1.0], init_error=RuntimeError("Driver Not Loaded")))
    assert NvmlMeter.unavailable().startswith("NVML did not initialise (RuntimeError: Driver Not Loaded)")
    install(fake_pynvml([], []))
    assert NvmlMeter.unavailable() == "no NVIDIA GPU"
    install(fake_pynvml([0], [1.0]))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert NvmlMeter.unavailable() == "CUDA_VISIBLE_DEVICES='' leaves no GPU visible"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-0c1d2e3f")
    assert "MIG" in NvmlMeter.unavailable()
