"""A MobileNetV2-style CNN on 3x32x32 images, registered as a model that arrives trained.

scikit-learn's digits, resized to 32x32 and repeated over three channels, stand in for the small images
people deploy such networks on. The model is what users usually bring: already trained. The first time
the file builds it, it trains it once (about half a minute here) and saves the checkpoint beside this
file (examples/checkpoints/, not committed); every later build loads it. effsearch then measures it as
given (the study's reference run) and prunes and fine-tunes it in the runs that follow.
"""

import sys
from pathlib import Path

import torch
from torch import nn

import effsearch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mobilenet_arch import MobileNetDigits, load  # noqa: E402 - the architecture both MobileNet examples share
from pretrain import train_and_save  # noqa: E402 - what the user did before bringing the model

CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "mobilenet_digits.pt"


def _train_once(model: nn.Module) -> None:
    """What the user did before bringing the model: train it (8 epochs of AdamW), then save it."""
    train_and_save(model, load, CHECKPOINT, epochs=8, lr=3e-3, batch_size=64, weight_decay=1e-4)


def build() -> nn.Module:
    model = MobileNetDigits()
    if not CHECKPOINT.exists():
        _train_once(model)
    model.load_state_dict(torch.load(CHECKPOINT, weights_only=True))
    return model.eval()


effsearch.register(model=build, data=load, name="mobilenet-digits", epochs=3, trained=True)
