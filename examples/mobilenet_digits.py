"""A MobileNetV2-style CNN on 3x32x32 images, registered as a model that arrives trained.

scikit-learn's digits, resized to 32x32 and repeated over three channels, stand in for the small images
people deploy such networks on. The model is what users usually bring: already trained. The first time
the file builds it, it trains it once (about half a minute here) and saves the checkpoint beside this
file (examples/checkpoints/, not committed); every later build loads it. effsearch then measures it as
given (the study's reference run) and prunes and fine-tunes it in the runs that follow.
"""

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import effsearch

CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "mobilenet_digits.pt"


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> project (1x1), with a residual add where the shapes allow it."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4) -> None:
        super().__init__()
        hidden = cin * expand
        self.body = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish(),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetDigits(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 1), InvertedResidual(16, 24, 2), InvertedResidual(24, 24, 1),
            InvertedResidual(24, 32, 2), InvertedResidual(32, 32, 1),
        )
        self.head = nn.Sequential(nn.Conv2d(32, 96, 1, bias=False), nn.BatchNorm2d(96), nn.Hardswish())
        self.classifier = nn.Linear(96, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


def load():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    x = (x - 0.5) / 0.5
    y = torch.tensor(d.target, dtype=torch.long)
    xt, xv, yt, yv = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return TensorDataset(xt, yt), TensorDataset(xv, yv)


def _train_once(model: nn.Module) -> None:
    """What the user did before bringing the model: train it (8 epochs of AdamW), then save it."""
    torch.manual_seed(0)
    train, _ = load()
    loader = torch.utils.data.DataLoader(train, batch_size=64, shuffle=True)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=8 * len(loader))
    model.train()
    for _ in range(8):
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            sched.step()
    CHECKPOINT.parent.mkdir(exist_ok=True)
    partial = CHECKPOINT.with_suffix(f".{os.getpid()}.partial")
    torch.save(model.state_dict(), partial)
    os.replace(partial, CHECKPOINT)  # whole or not at all, even with several workers starting at once


def build() -> nn.Module:
    model = MobileNetDigits()
    if not CHECKPOINT.exists():
        _train_once(model)
    model.load_state_dict(torch.load(CHECKPOINT, weights_only=True))
    return model.eval()


effsearch.register(model=build, data=load, name="mobilenet-digits", epochs=3, trained=True)
