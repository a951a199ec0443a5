"""tiny_mlp.py with a fault injected into training, chosen by environment variables the driver passes on.

EFFSEARCH_FAULT picks the fault; EFFSEARCH_FAULT_DIR holds marker files, so a fault can hit once only
(workers are separate processes, and a failed run's workers are replaced).
  hang              every training step sleeps for an hour
  hang_if_marked    training steps sleep for an hour while the file HANG exists
  (both hang modes touch the file `hanging` first)
  slow              every training step sleeps EFFSEARCH_FAULT_SLEEP seconds (default 1)
  slow_first        the first training step of the study sleeps EFFSEARCH_FAULT_SLEEP seconds (touching `slow`)
  kill_once         the first training step of the first run SIGKILLs its own process
  staged            run 1: NaN loss; run 2: a shape mismatch; run 3: an op ONNX cannot export; then clean
"""

import multiprocessing
import os
import signal
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

import effsearch

FAULT = os.environ.get("EFFSEARCH_FAULT", "")
MARKS = Path(os.environ.get("EFFSEARCH_FAULT_DIR", "."))


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
        if self.training and torch.is_grad_enabled():
            x = self.train_step_fault(x)
        # Only the export of a trained model (in a rank process), not the driver's untrained measurement.
        in_rank = multiprocessing.current_process().name.startswith("effsearch-rank")
        if FAULT == "staged" and torch.onnx.is_in_onnx_export() and in_rank and first_time("onnx"):
            x = torch.cummax(x, dim=1).values  # aten::cummax has no ONNX translation at opset 17
        return self.body(x)

    def train_step_fault(self, x):
        if FAULT == "hang" or (FAULT == "hang_if_marked" and (MARKS / "HANG").exists()):
            (MARKS / "hanging").touch()  # tells the test that a run is inside training
            time.sleep(3600)
        elif FAULT == "slow":
            time.sleep(float(os.environ.get("EFFSEARCH_FAULT_SLEEP", "1")))
        elif FAULT == "slow_first" and first_time("slow"):
            time.sleep(float(os.environ.get("EFFSEARCH_FAULT_SLEEP", "1")))
        elif FAULT == "kill_once" and first_time("killed"):
            os.kill(os.getpid(), signal.SIGKILL)
        elif FAULT == "staged":
            if first_time("nan"):
                return x * float("nan")
            if first_time("shape"):
                return x + torch.zeros(4, x.shape[1])  # a (4, 30) tensor against a batch of 128
        return x


def build():
    return Net()


def load():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(192, 30, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return TensorDataset(x[:128], y[:128]), TensorDataset(x[128:], y[128:])


effsearch.register(model=build, data=load, name="faulty-mlp", epochs=1)
