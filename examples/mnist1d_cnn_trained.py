"""The MNIST-1D CNN of examples/mnist1d_cnn.py, registered as a model that arrives trained.

The first time the file builds it, it trains it once (8 epochs, the best dense setting of the MNIST-1D
table, about a minute here) and saves the checkpoint beside this file (examples/checkpoints/, not
committed); every later build loads it. effsearch measures it as given (the study's reference run), then
prunes and fine-tunes it; benchmarks/distillation.py uses it as the teacher of its pruned copies.
"""

import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import effsearch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mnist1d_data  # noqa: E402 - the data both MNIST-1D examples share
from mnist1d_arch import SHAPE, cnn  # noqa: E402 - the network both MNIST-1D CNN examples share

CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "mnist1d_cnn.pt"
EPOCHS = 8


def _train_once(model: nn.Module) -> None:
    """What the user did before bringing the model: train it (AdamW, one-cycle, lr 3e-3, batch 32, clip 1)."""
    torch.manual_seed(0)
    train, _ = load()
    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=EPOCHS * len(loader))
    model.train()
    for _ in range(EPOCHS):
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
    CHECKPOINT.parent.mkdir(exist_ok=True)
    partial = CHECKPOINT.with_suffix(f".{os.getpid()}.partial")
    torch.save(model.state_dict(), partial)
    os.replace(partial, CHECKPOINT)  # whole or not at all, even with several workers starting at once


def build() -> nn.Module:
    model = cnn()
    if not CHECKPOINT.exists():
        _train_once(model)
    model.load_state_dict(torch.load(CHECKPOINT, weights_only=True))
    return model.eval()


def load():
    return mnist1d_data.datasets(SHAPE)


def test_data():
    return mnist1d_data.test_dataset(SHAPE)


effsearch.register(model=build, data=load, name="mnist1d-cnn-trained", epochs=4, trained=True)
