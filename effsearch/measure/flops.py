"""FLOPs and parameters of the (pruned) torch module, counted by fvcore."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

__all__ = ["FlopsReport", "count_flops"]


@dataclass(frozen=True)
class FlopsReport:
    """FLOPs per sample (fvcore: one fused multiply-add counts as one) and the ops fvcore skipped."""

    flops: int
    param_count: int
    skipped_ops: dict[str, int]


def count_flops(module: torch.nn.Module, sample: torch.Tensor) -> FlopsReport:
    """Count on one sample (batch 1) with the module in eval mode."""
    from fvcore.nn import FlopCountAnalysis, parameter_count

    module = module.cpu().eval()
    # fvcore logs a warning per skipped op; they are recorded on the trial instead.
    logging.getLogger("fvcore.nn.jit_analysis").setLevel(logging.ERROR)
    analysis = FlopCountAnalysis(module, (sample.cpu(),))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with torch.no_grad():
        total = int(analysis.total())
    skipped = {str(k): int(v) for k, v in analysis.unsupported_ops().items()}
    return FlopsReport(total, int(parameter_count(module)[""]), skipped)
