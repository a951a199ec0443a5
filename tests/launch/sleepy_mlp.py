"""tests/userfiles/tiny_mlp.py whose training step number SLEEPY_AT of the study (counted across workers,
one step per run with the tests' space) writes its rank's pid to SLEEPY_MARKS/slow and sleeps, so that a
test can stop that run's worker in the middle of its run."""

import os
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

import effsearch

MARKS = Path(os.environ.get("SLEEPY_MARKS", "."))
AT = int(os.environ.get("SLEEPY_AT", "0"))


def step_number():
    """This training step's number in the study, from 1 (the first to make step-N takes it)."""
    n = 1
    while True:
        try:
            os.close(os.open(MARKS / f"step-{n}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return n
        except FileExistsError:
            n += 1


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 2))

    def forward(self, x):
        if AT and self.training and torch.is_grad_enabled() and step_number() == AT:
            (MARKS / "slow.tmp").write_text(str(os.getpid()))
            (MARKS / "slow.tmp").rename(MARKS / "slow")
            time.sleep(600)
        return self.body(x)


def load():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(192, 30, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorDataset(x[:128], y[:128]), TensorDataset(x[128:], y[128:])


effsearch.register(model=Net, data=load, name="sleepy-mlp", epochs=1)
