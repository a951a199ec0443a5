"""GPU energy from NVML: the total-energy counter, or sampled power where a GPU lacks it."""

from __future__ import annotations

import os
import threading
import time

from effsearch.measure.energy import EnergyMeter

__all__ = ["NvmlMeter"]


def _nvml():
    try:
        import pynvml
    except ImportError as exc:
        raise ImportError("pynvml is missing; install it with: pip install 'effsearch[nvml]'") from exc
    pynvml.nvmlInit()
    return pynvml


def _visible_indices(count: int) -> list[int]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None or env.strip() == "":
        return list(range(count))
    return [int(i) for i in env.split(",") if i.strip().isdigit() and int(i) < count]


class NvmlMeter(EnergyMeter):
    """Energy of the GPUs this process may use, read once per run (machine scope)."""

    name = "nvml"
    measured = True
    scope = "machine"
    priority = 20

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            nv = _nvml()
        except ImportError as exc:
            return str(exc)
        except Exception as exc:
            return f"NVML did not initialise: {exc}"
        if nv.nvmlDeviceGetCount() == 0:
            return "no NVIDIA GPU"
        return None

    def __init__(self, sample_interval_s: float = 0.05) -> None:
        self._nv = _nvml()
        self._handles = [self._nv.nvmlDeviceGetHandleByIndex(i) for i in _visible_indices(self._nv.nvmlDeviceGetCount())]
        self._interval = sample_interval_s
        self._counter = all(self._has_counter(h) for h in self._handles)
        self._start_mj: list[int] = []
        self._sampled_j = 0.0
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def _has_counter(self, handle) -> bool:
        try:
            self._nv.nvmlDeviceGetTotalEnergyConsumption(handle)
            return True
        except Exception:
            return False

    def _sample(self) -> None:
        last = time.perf_counter()
        while not self._stop_event.wait(self._interval):
            now = time.perf_counter()
            watts = sum(self._nv.nvmlDeviceGetPowerUsage(h) for h in self._handles) / 1000.0
            self._sampled_j += watts * (now - last)
            last = now

    def start(self) -> None:
        if self._counter:
            self._start_mj = [self._nv.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles]
            return
        self._sampled_j = 0.0
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        if self._counter:
            now = [self._nv.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles]
            return sum(b - a for a, b in zip(self._start_mj, now)) / 1000.0
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
        return self._sampled_j
