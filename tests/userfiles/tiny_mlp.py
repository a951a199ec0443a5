"""A tiny MLP on synthetic data: a training run takes well under a second, so tests pay mostly for start-up."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import effsearch


def build():
    return nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 2))


def load():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(192, 30, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorDataset(x[:128], y[:128]), TensorDataset(x[128:], y[128:])


effsearch.register(model=build, data=load, name="tiny-mlp", epochs=1)
