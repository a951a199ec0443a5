"""An MLP on scikit-learn's digits whose training plateaus (loss near log 10, finite) at AdamW learning rates of 1 or more."""

import torch
from torch import nn
from torch.utils.data import TensorDataset

import effsearch


def build():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def load():
    from sklearn.datasets import load_digits

    features, labels = load_digits(return_X_y=True)
    x, y = torch.tensor(features / 16.0, dtype=torch.float32), torch.tensor(labels, dtype=torch.long)
    held_out = torch.arange(len(y)) % 5 == 0  # every fifth sample validates
    return TensorDataset(x[~held_out], y[~held_out]), TensorDataset(x[held_out], y[held_out])


effsearch.register(model=build, data=load, name="plateau-mlp", epochs=4)
