"""The training levers: the precision the steps run in, and distillation from the model as given."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from effsearch.errors import TrialError
from effsearch.inputs import call

__all__ = ["Mixed", "Teacher", "distill_loss", "MAX_SKIPPED_FRAC", "SCALER_INIT"]

# More than this share of steps skipped by fp16's gradient scaler fails the run: it barely trained.
MAX_SKIPPED_FRAC = 0.10
# The scaler's first scale. PyTorch's 2**16 overflows on the first steps of most small models and
# skips them; starting lower costs a few growth steps instead (it doubles after 2000 clean steps).
SCALER_INIT = 2.0**10


class Mixed:
    """One rank's training precision: autocast around the forward passes, and fp16's gradient scaler.

    fp32: nothing; bf16: autocast to bfloat16 (CPU and GPU), no scaler (its range is fp32's);
    fp16: autocast to float16 with a GradScaler (CUDA only). Weights stay fp32 throughout, so the
    exported model is fp32 whatever the training precision. skipped: optimizer steps the scaler skipped
    for non-finite gradients.
    """

    def __init__(self, precision: str, device: torch.device) -> None:
        if precision not in ("fp32", "bf16", "fp16"):
            raise TrialError(f"unknown train_precision {precision!r}; use fp32, bf16 or fp16")
        self.precision = precision
        self.device = device
        self.scaler = torch.amp.GradScaler(device.type, init_scale=SCALER_INIT) if precision == "fp16" else None
        self.skipped = 0

    @classmethod
    def for_run(cls, precision: str, device: torch.device) -> Mixed:
        """The precision of a training run; fp16 training is offered on GPUs only (space/dimensions.py)."""
        if precision == "fp16" and device.type != "cuda":
            raise TrialError("train_precision fp16 needs a GPU (its gradient scaler is CUDA's); on CPU choose fp32 or bf16")
        return cls(precision, device)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self, opt: torch.optim.Optimizer, params: Any, clip_norm: float) -> None:
        """Clip (on unscaled gradients) and step; under fp16, count a step the scaler skipped."""
        if self.scaler is None:
            if clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, clip_norm)
            opt.step()
            return
        self.scaler.unscale_(opt)
        if clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        before = self.scaler.get_scale()
        self.scaler.step(opt)
        self.scaler.update()
        # The scale falls exactly when the step was skipped for inf/NaN gradients.
        if self.scaler.get_scale() < before:
            self.skipped += 1

    def check(self, steps: int) -> None:
        """Fail the run where the scaler skipped more than MAX_SKIPPED_FRAC of its steps."""
        if steps and self.skipped > MAX_SKIPPED_FRAC * steps:
            raise TrialError(
                f"fp16 training: the gradient scaler skipped {self.skipped} of {steps} steps "
                f"(more than {MAX_SKIPPED_FRAC:.0%}) for overflowing gradients; choose bf16 or fp32, or lower lr"
            )


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """The distillation term: soft targets for class logits, the teacher's outputs otherwise.

    Class logits (integer targets, a last dimension of 2 or more): KL divergence between the
    temperature-softened distributions, times T^2 so its gradients keep the task loss's scale (Hinton et
    al.); any other output (a regression): mean squared error to the teacher's output.
    """
    if not targets.dtype.is_floating_point and student.dim() >= 2 and student.shape[-1] > 1:
        classes = student.shape[-1]
        s = F.log_softmax(student.float().reshape(-1, classes) / temperature, dim=-1)
        t = F.log_softmax(teacher.float().reshape(-1, classes) / temperature, dim=-1)
        return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature**2
    return F.mse_loss(student.float(), teacher.float())


@dataclass(frozen=True)
class Teacher:
    """The unpruned model as given, frozen, and the weight of its soft targets in the loss."""

    model: torch.nn.Module
    weight: float
    temperature: float

    @classmethod
    def of(cls, model: torch.nn.Module, weight: float, temperature: float, device: torch.device) -> Teacher:
        """A frozen copy of `model` (before pruning or training) on `device`."""
        frozen = copy.deepcopy(model).to(device).eval()
        frozen.requires_grad_(False)
        return cls(frozen, weight, temperature)

    def loss(self, task: torch.Tensor, outputs: torch.Tensor, x: Any, y: torch.Tensor, mixed: Mixed) -> torch.Tensor:
        """(1 - weight) * task + weight * distillation; the teacher's forward pass in the run's precision."""
        with torch.no_grad(), mixed.autocast():
            taught = call(self.model, x)
        return (1.0 - self.weight) * task + self.weight * distill_loss(outputs, taught, y, self.temperature)
