"""A 32-channel 1-D CNN on random sequences: pruning it shows what channel rounding builds."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import effsearch


def build():
    return nn.Sequential(nn.Conv1d(4, 32, 3, padding=1), nn.ReLU(), nn.Conv1d(32, 32, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, 5))


def load():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 4, 16, generator=g)
    y = x.mean(dim=(1, 2)).gt(0).long()
    return TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:])


effsearch.register(model=build, data=load, name="cnn-1d", epochs=1)
