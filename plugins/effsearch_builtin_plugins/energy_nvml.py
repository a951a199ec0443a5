"""GPU energy from NVML: the total-energy counter, or sampled power where a GPU lacks it.

Reads every GPU this process may use: all of them, or those CUDA_VISIBLE_DEVICES names (indices or
GPU UUIDs). The counter (millijoules since the driver loaded) exists from Volta on; older GPUs fall back
to integrating nvmlDeviceGetPowerUsage over a sampling thread.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from typing import Any

from effsearch.plugins import EnergyMeter

__all__ = ["NvmlMeter", "visible_devices"]


@functools.cache
def _nvml() -> Any:
    """pynvml, initialised once per process."""
    try:
        import pynvml
    except ImportError as exc:
        raise ImportError("pynvml is missing; install it with: pip install 'effsearch[nvml]'") from exc
    pynvml.nvmlInit()
    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def visible_devices(nv: Any) -> list[tuple[int, Any]]:
    """(NVML index, handle) of each GPU this process may use, following CUDA_VISIBLE_DEVICES.

    Raises ValueError for a setting NVML cannot follow (MIG instances share their GPU's energy).
    """
    count = nv.nvmlDeviceGetCount()
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return [(i, nv.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]
    uuids: dict[str, int] | None = None
    chosen: list[int] = []
    for item in (s.strip() for s in env.split(",")):
        if item.isdigit() and int(item) < count:
            index = int(item)
        elif item.startswith("MIG-"):
            raise ValueError(f"CUDA_VISIBLE_DEVICES names MIG instance {item}; NVML energy is per whole GPU, shared with other instances")
        elif item.startswith("GPU-"):
            if uuids is None:
                uuids = {_text(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i))): i for i in range(count)}
            match = [i for u, i in uuids.items() if u.startswith(item)]  # CUDA accepts a unique prefix
            if len(match) != 1:
                break
            index = match[0]
        else:
            break  # CUDA stops at the first entry it cannot parse, as here
        if index not in chosen:
            chosen.append(index)
    return [(i, nv.nvmlDeviceGetHandleByIndex(i)) for i in chosen]


def _has_counter(nv: Any, handle: Any) -> bool:
    try:
        nv.nvmlDeviceGetTotalEnergyConsumption(handle)
        return True
    except Exception:
        return False


def _instant_power(nv: Any, handle: Any) -> int:
    """Instantaneous power in mW (drivers from 535 on); raises where the driver lacks the field."""
    (field,) = nv.nvmlDeviceGetFieldValues(handle, [nv.NVML_FI_DEV_POWER_INSTANT])
    if field.nvmlReturn != 0:
        raise RuntimeError(f"NVML field {nv.NVML_FI_DEV_POWER_INSTANT} returned {field.nvmlReturn}")
    return int(field.value.uiVal)


def _power_reader(nv: Any, handle: Any) -> Any:
    """A function returning the GPU's power in mW, or None where NVML reports none.

    nvmlDeviceGetPowerUsage is a one-second average on recent GPUs (on an H100 it undercounted a 3 s
    burst by 13%), so the instantaneous field is preferred where the driver has it.
    """
    for read in (_instant_power, lambda nv, h: nv.nvmlDeviceGetPowerUsage(h)):
        try:
            read(nv, handle)
        except Exception:
            continue
        return functools.partial(read, nv, handle)
    return None


class NvmlMeter(EnergyMeter):
    """Energy of the GPUs this process may use, read once per run (machine scope).

    sample_interval_s: the power-sampling period where a GPU lacks the energy counter.
    counter: force (True) or forbid (False) the counter; None uses it when every GPU has it.
    """

    name = "nvml"
    measured = True
    scope = "machine"
    priority = 20
    reads = "gpu"
    # The fallback integrates power sampled every 50 ms: a second holds 20 samples. The counter's own
    # update period is not published; a second keeps it small against the window too.
    min_window_s = 1.0

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            nv = _nvml()
        except ImportError as exc:
            return str(exc)
        except Exception as exc:
            return f"NVML did not initialise ({type(exc).__name__}: {exc}); is the NVIDIA driver loaded?"
        try:
            devices = visible_devices(nv)
        except ValueError as exc:
            return str(exc)
        if not devices:
            hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
            return "no NVIDIA GPU" if hidden is None else f"CUDA_VISIBLE_DEVICES={hidden!r} leaves no GPU visible"
        for index, h in devices:
            if not _has_counter(nv, h) and _power_reader(nv, h) is None:
                return f"GPU {index} reports neither an energy counter nor its power draw"
        return None

    @classmethod
    def describe(cls) -> str | None:
        nv = _nvml()
        devices = visible_devices(nv)
        how = "energy counter" if all(_has_counter(nv, h) for _, h in devices) else "power sampled every 50 ms"
        return f"GPU {', '.join(str(i) for i, _ in devices)}: {how}"

    def __init__(self, sample_interval_s: float = 0.05, counter: bool | None = None) -> None:
        self._nv = _nvml()
        self._handles = [h for _, h in visible_devices(self._nv)]
        if not self._handles:
            raise RuntimeError("NVML sees no GPU this process may use")
        self._interval = sample_interval_s
        self._counter = all(_has_counter(self._nv, h) for h in self._handles) if counter is None else counter
        self._power: list[Any] | None = None  # power readers, made when sampling first starts
        self._start_mj: list[int] = []
        self._sampled_j = 0.0
        self._last: tuple[float, float] = (0.0, 0.0)
        self._error: BaseException | None = None
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False

    def _watts(self) -> float:
        return sum(read() for read in self._power) / 1000.0

    def _integrate(self) -> None:
        """Add the energy since the last sample: the trapezoid between the two power readings."""
        now, watts = time.perf_counter(), self._watts()
        t0, w0 = self._last
        self._sampled_j += (w0 + watts) / 2.0 * (now - t0)
        self._last = (now, watts)

    def _sample(self) -> None:
        while not self._stop_event.wait(self._interval):
            try:
                self._integrate()
            except Exception as exc:
                self._error = exc
                return

    def start(self) -> None:
        if self._counter:
            self._start_mj = [self._nv.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles]
            self._started = True
            return
        if self._power is None:
            self._power = [_power_reader(self._nv, h) for h in self._handles]
            if None in self._power:
                raise RuntimeError("a GPU reports neither an energy counter nor its power draw")
        self._sampled_j = 0.0
        self._error = None
        self._last = (time.perf_counter(), self._watts())
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="effsearch-nvml-sample")
        self._thread.start()
        self._started = True

    def stop(self) -> float:
        if not self._started:
            raise RuntimeError("NvmlMeter.stop() called before start()")
        self._started = False
        if self._counter:
            now = [self._nv.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles]
            # The counter is 64-bit and never wraps; it restarts only when the driver reloads.
            return sum(max(0, b - a) for a, b in zip(self._start_mj, now, strict=True)) / 1000.0
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise RuntimeError(f"NVML power sampling failed: {type(self._error).__name__}: {self._error}")
        self._integrate()
        return self._sampled_j
