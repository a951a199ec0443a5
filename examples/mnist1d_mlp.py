"""An MLP over MNIST-1D's 40 steps (10 classes): 3,000 training and 1,000 validation sequences.

A second model family for the MNIST-1D CNN's training defaults to be checked on. The test sequences are
not part of the study: test_data() returns them for benchmarks/headline.py.
"""

import sys
from pathlib import Path

from torch import nn

import effsearch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mnist1d_data  # noqa: E402 - the data both MNIST-1D examples share

HIDDEN = 256
SHAPE = (40,)


def build() -> nn.Module:
    return nn.Sequential(
        nn.Linear(40, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, 10),
    )


def load():
    return mnist1d_data.datasets(SHAPE)


def test_data():
    return mnist1d_data.test_dataset(SHAPE)


effsearch.register(model=build, data=load, name="mnist1d-mlp", epochs=10)
