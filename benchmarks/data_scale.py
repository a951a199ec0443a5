"""Data at scale: the validation metric over a set larger than memory should hold, streamed in batches.

A synthetic validation set of `--samples` (41,000) 3x64x64 float32 images, 2.0 GB if stacked, each made
on the fly from its index (a seeded generator: no file, no memory map), scored by a small CNN exported to
ONNX. The driver's anonymous resident memory (RssAnon, /proc/self/status, sampled every 5 ms) is read
before the study's Measurer is built and at its peak while it is built (fingerprint, calibration sample,
latency batch) and while it measures the artifact (the metric over every sample, then latency): the goal
is a growth of at most 500 MB. `--stacked` also times the whole set stacked into one array first, the
way the metric read it before, for comparison.

    python benchmarks/data_scale.py
    python benchmarks/data_scale.py --samples 41000 --stacked --json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import torch

from effsearch.measure.artifact import Measurer
from effsearch.measure.metric import ort_metric, stack_dataset
from effsearch.onnx_export import export_onnx
from effsearch.plugins import choose_energy_meter, choose_latency_target
from effsearch.userfile import default_metric, load_user_file

GOAL_MB = 500

USER_FILE = '''
import torch
from torch import nn
from torch.utils.data import Dataset

import effsearch


class Synthetic(Dataset):
    """Images made from their index: the same sample every time it is read, nothing stored."""

    def __init__(self, n, offset):
        self.n, self.offset = n, offset

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.offset + i)
        label = (self.offset + i) % 10
        x = torch.randn(3, 64, 64, generator=g) + 0.5 * label
        return x, label


def build():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


effsearch.register(model=build, data=lambda: (Synthetic(1024, 10_000_000), Synthetic({samples}, 0)), name="data-scale")
'''


class PeakRss:
    """The peak of this process's RssAnon (bytes) while the block runs, sampled on a thread."""

    def __init__(self, every_s: float = 0.005) -> None:
        self.every_s = every_s
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def now() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(self.every_s)

    def __enter__(self) -> PeakRss:
        self.peak = self.now()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=41_000, help="validation samples of 3x64x64 float32")
    ap.add_argument("--stacked", action="store_true", help="also time the set stacked whole, for comparison")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    stacked_gb = args.samples * 3 * 64 * 64 * 4 / 1e9
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / "data_scale.py"
        path.write_text(textwrap.dedent(USER_FILE.format(samples=args.samples)))
        uf = load_user_file(path)
        datasets = uf.registration.data()
        onnx = export_onnx(uf.registration.model().eval(), torch.randn(8, 3, 64, 64), tmp / "model.onnx").path
        before = PeakRss.now()
        t0 = time.perf_counter()
        with PeakRss() as built:
            measurer = Measurer(uf, datasets, choose_energy_meter(None), choose_latency_target()().providers(), 1, repeats=50)
        t1 = time.perf_counter()
        with PeakRss() as measured:
            metrics = measurer.measure(onnx, 0)
        t2 = time.perf_counter()
        growth = max(built.peak, measured.peak) - before
        print(f"validation set: {args.samples:,} samples of 3x64x64 float32 ({stacked_gb:.2f} GB stacked), made from their index")
        print(f"RssAnon before {before / 1e6:.0f} MB; peak while building the Measurer {built.peak / 1e6:.0f} MB "
              f"({t1 - t0:.1f} s); peak while measuring {measured.peak / 1e6:.0f} MB ({t2 - t1:.1f} s: metric over every "
              f"sample, then latency); accuracy {metrics['accuracy']:.4f}")
        verdict = "met" if growth <= GOAL_MB * 1e6 else "NOT met"
        print(f"growth {growth / 1e6:.0f} MB (goal <= {GOAL_MB} MB: {verdict})")
        out = {"samples": args.samples, "stacked_gb": stacked_gb, "rss_before_mb": before / 1e6,
               "rss_growth_mb": growth / 1e6, "build_s": t1 - t0, "measure_s": t2 - t1, "accuracy": metrics["accuracy"]}
        if args.stacked:
            t3 = time.perf_counter()
            with PeakRss() as whole:
                data = stack_dataset(datasets[1])
                value = ort_metric(onnx, data, default_metric)
                del data
            t4 = time.perf_counter()
            print(f"stacked whole first: RssAnon peak {whole.peak / 1e6:.0f} MB (growth {(whole.peak - before) / 1e6:.0f} MB), "
                  f"{t4 - t3:.1f} s, accuracy {value:.4f}")
            out.update(stacked_growth_mb=(whole.peak - before) / 1e6, stacked_s=t4 - t3)
            if not np.isclose(value, metrics["accuracy"]):
                raise SystemExit("the streamed and the stacked metric differ")
    if args.json:
        print(json.dumps({"data_scale": out}))


if __name__ == "__main__":
    main()
