"""A one-hidden-layer MLP on the digits, wide enough that pruning moves its int8 file across a size limit."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import effsearch


def load():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.long)
    return TensorDataset(x[:1400], y[:1400]), TensorDataset(x[1400:], y[1400:])


effsearch.register(model=lambda: nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)),
                   data=load, name="wide-mlp", epochs=1)
