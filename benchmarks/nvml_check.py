"""Check the NVML energy meter against nvidia-smi's reported power over the same window (GPU machines).

Loads the GPU with matrix products for a fixed time while (a) NvmlMeter reads the total-energy counter,
(b) NvmlMeter in power-sampling mode integrates nvmlDeviceGetPowerUsage, and (c) `nvidia-smi -lms 100`
reports power.draw, integrated here. Prints the three energies and their ratios.

    python benchmarks/nvml_check.py --seconds 10
"""

from __future__ import annotations

import argparse
import subprocess
import time

import torch

from effsearch_builtin_plugins.energy_nvml import NvmlMeter


def load_gpu(seconds: float) -> int:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
        n += 10
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    torch.cuda.init()
    load_gpu(1.0)  # warm up clocks and kernels
    counter = NvmlMeter()
    sampled = NvmlMeter(sample_interval_s=0.05, counter=False)  # the power-sampling fallback, beside the counter
    smi = subprocess.Popen(
        ["nvidia-smi", "--query-gpu=timestamp,power.draw", "--format=csv,noheader,nounits", "-lms", "100"],
        stdout=subprocess.PIPE, text=True,
    )
    time.sleep(0.5)
    t0 = time.perf_counter()
    counter.start()
    sampled.start()
    n = load_gpu(args.seconds)
    e_counter = counter.stop()
    e_sampled = sampled.stop()
    window = time.perf_counter() - t0
    time.sleep(0.3)
    smi.terminate()
    lines = smi.communicate()[0].strip().splitlines()
    watts = [float(line.split(",")[1]) for line in lines if line.count(",") == 1 and line.split(",")[1].strip() not in ("", "[N/A]")]
    # nvidia-smi samples span a little more than the window: take the mean power over the window's length.
    busy = sorted(watts)[len(watts) // 10:] if watts else []
    mean_w = sum(busy) / len(busy) if busy else float("nan")
    e_smi = mean_w * window
    print(f"window {window:.2f} s, {n} bf16 8192^3 products, {len(watts)} nvidia-smi samples")
    print(f"NVML total-energy counter : {e_counter:9.1f} J  ({e_counter / window:6.1f} W mean)")
    print(f"NVML power sampling       : {e_sampled:9.1f} J  ({e_sampled / window:6.1f} W mean)")
    print(f"nvidia-smi power.draw     : {e_smi:9.1f} J  ({mean_w:6.1f} W mean of busy samples)")
    print(f"ratio counter/smi {e_counter / e_smi:.3f}, sampling/smi {e_sampled / e_smi:.3f}")


if __name__ == "__main__":
    main()
