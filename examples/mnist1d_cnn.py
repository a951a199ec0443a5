"""A 1-D CNN on MNIST-1D (40-step sequences, 10 classes): 3,000 training and 1,000 validation sequences.

The test sequences are not part of the study: test_data() returns them for benchmarks/headline.py.
"""

import sys
from pathlib import Path

from torch import nn

import effsearch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mnist1d_data  # noqa: E402 - the data both MNIST-1D examples share
from mnist1d_arch import SHAPE, WIDTH, cnn  # noqa: E402 - the network both MNIST-1D CNN examples share


def build(width: int = WIDTH) -> nn.Module:
    return cnn(width)


def load():
    return mnist1d_data.datasets(SHAPE)


def test_data():
    return mnist1d_data.test_dataset(SHAPE)


effsearch.register(model=build, data=load, name="mnist1d-cnn", epochs=4)
