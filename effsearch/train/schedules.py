"""Learning-rate schedules stepped once per optimizer step, with linear warm-up."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
    LRScheduler,
    OneCycleLR,
    SequentialLR,
    StepLR,
)

__all__ = ["build_scheduler"]


def build_scheduler(
    optimizer: torch.optim.Optimizer, name: str, total_steps: int, warmup_frac: float, max_lr: float
) -> LRScheduler:
    """A per-step scheduler: `constant`, `step` (x0.3 at each third of training), `cosine` or `onecycle`.

    warmup_frac: fraction of total_steps spent ramping linearly up to the base learning rate
    (for one-cycle it is the rising phase, at least 5%).
    """
    total_steps = max(1, total_steps)
    if name == "onecycle":
        pct = min(max(warmup_frac, 0.05), 0.5)
        return OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps + 1, pct_start=pct)
    warmup = int(round(warmup_frac * total_steps))
    rest = max(1, total_steps - warmup)
    if name == "constant":
        main: LRScheduler = ConstantLR(optimizer, factor=1.0, total_iters=0)
    elif name == "step":
        main = StepLR(optimizer, step_size=max(1, rest // 3), gamma=0.3)
    elif name == "cosine":
        main = CosineAnnealingLR(optimizer, T_max=rest, eta_min=max_lr * 0.01)
    else:
        raise ValueError(f"unknown learning-rate schedule {name!r}; use constant, step, cosine or onecycle")
    if warmup == 0:
        return main
    ramp = LinearLR(optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    return SequentialLR(optimizer, [ramp, main], milestones=[warmup])
