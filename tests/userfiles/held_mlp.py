"""A tiny MLP whose first training step of the study is held while the file HOLD exists, so that a test
decides when the run goes on (faulty_mlp.py's slow_first, without a fixed sleep).

EFFSEARCH_FAULT_DIR holds the marker files: HOLD (the test's), and `held`, touched by the held step first
(workers are separate processes; only the first step of the study is held).
"""

import os
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

import effsearch

MARKS = Path(os.environ.get("EFFSEARCH_FAULT_DIR", "."))
HOLD_AT_MOST_S = 600


def first_time(name):
    """True for the first caller only, across processes."""
    try:
        os.close(os.open(MARKS / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x):
        # Training steps only: probe() and pruning run the model in eval mode.
        if self.training and torch.is_grad_enabled() and (MARKS / "HOLD").exists() and first_time("held"):
            deadline = time.monotonic() + HOLD_AT_MOST_S
            while (MARKS / "HOLD").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        return self.body(x)


def build():
    return Net()


def load():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(192, 30, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorDataset(x[:128], y[:128]), TensorDataset(x[128:], y[128:])


effsearch.register(model=build, data=load, name="held-mlp", epochs=1)
