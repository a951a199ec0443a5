"""What a user did before bringing a trained model, shared by the examples that arrive trained: train it
once (AdamW, one-cycle) and save the checkpoint whole or not at all."""

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def train_and_save(model: nn.Module, data, checkpoint: Path, *, epochs: int, lr: float, batch_size: int,
                   weight_decay: float = 0.01, clip: float | None = None) -> None:
    """Train `model` on data()'s training set with the seed fixed, then save its weights to `checkpoint`."""
    torch.manual_seed(0)
    train, _ = data()
    loader = torch.utils.data.DataLoader(train, batch_size=batch_size, shuffle=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(loader))
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            sched.step()
    checkpoint.parent.mkdir(exist_ok=True)
    partial = checkpoint.with_suffix(f".{os.getpid()}.partial")
    torch.save(model.state_dict(), partial)
    os.replace(partial, checkpoint)  # whole or not at all, even with several workers starting at once
