"""A 1-D CNN on MNIST-1D (40-step sequences, 10 classes): 3,000 training and 1,000 validation sequences.

The test sequences are not part of the study: test_data() returns them for benchmarks/headline.py.
"""

import sys
from pathlib import Path

from torch import nn

import effsearch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mnist1d_data  # noqa: E402 - the data both MNIST-1D examples share

# Wide enough that dense latency at batch 1 stands well above onnxruntime's per-call floor, and that
# pruning leaves several distinct channel counts after rounding to 8 or 16.
WIDTH = 128
SHAPE = (1, 40)  # channels first


def build(width: int = WIDTH) -> nn.Module:
    def conv(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
        return [nn.Conv1d(cin, cout, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm1d(cout), nn.ReLU()]

    return nn.Sequential(
        *conv(1, width, 5),
        *conv(width, width, 3, stride=2),  # 40 -> 20
        *conv(width, width, 3),
        *conv(width, width, 3, stride=2),  # 20 -> 10
        nn.Flatten(),  # where a pattern sits matters in MNIST-1D: no global pooling
        nn.Linear(width * 10, 10),
    )


def load():
    return mnist1d_data.datasets(SHAPE)


def test_data():
    return mnist1d_data.test_dataset(SHAPE)


effsearch.register(model=build, data=load, name="mnist1d-cnn", epochs=4)
