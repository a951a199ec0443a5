"""The MNIST-1D CNN of examples/mnist1d_cnn.py, registered as a model that arrives trained.

The first time the file builds it, it trains it once (8 epochs, the best dense setting of the MNIST-1D
table, about a minute here) and saves the checkpoint beside this file (examples/checkpoints/, not
committed); every later build loads it. effsearch measures it as given (the study's reference run), then
prunes and fine-tunes it; benchmarks/distillation.py uses it as the teacher of its pruned copies.
"""

import sys
from pathlib import Path

import torch
from torch import nn

import effsearch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mnist1d_data  # noqa: E402 - the data both MNIST-1D examples share
from mnist1d_arch import SHAPE, cnn  # noqa: E402 - the network both MNIST-1D CNN examples share
from pretrain import train_and_save  # noqa: E402 - what the user did before bringing the model

CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "mnist1d_cnn.pt"
EPOCHS = 8


def _train_once(model: nn.Module) -> None:
    """What the user did before bringing the model: train it (AdamW, one-cycle, lr 3e-3, batch 32, clip 1)."""
    train_and_save(model, load, CHECKPOINT, epochs=EPOCHS, lr=3e-3, batch_size=32, clip=1.0)


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
