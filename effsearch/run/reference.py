"""Run 1 of a model that arrives trained: that model exactly as given, exported, every precision made and
measured, no training (its training energy is truly 0 J and its training time 0 s).

Every drop, every "x of the baseline" and every limit of such a study is measured from this run's fp32
artifact; quantizing a trained model without fine-tuning is a real option, so its precisions are trials.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from effsearch.compress.prune import PruneReport, count_params
from effsearch.config import TrainConfig
from effsearch.figures import TRAIN_S
from effsearch.measure.artifact import Measurer
from effsearch.outputs import picked
from effsearch.run.pipeline import RunResult, export_trained, make_and_measure
from effsearch.train.loop import RankResult
from effsearch.userfile import UserFile

__all__ = ["run_reference"]


def run_reference(
    uf: UserFile,
    datasets: tuple[Any, Any],
    measurer: Measurer,
    config: TrainConfig,
    precisions: tuple[str, ...],
    artifact_dir: Path,
) -> RunResult:
    """Export the model the factory returns, unchanged, and make and measure each precision of it."""
    t_start = time.perf_counter()
    torch.manual_seed(config.seed)
    with torch.no_grad():
        module = uf.registration.model()
    exported = export_trained(picked(module, uf.registration.output), datasets[1], artifact_dir)
    params = count_params(module)
    made = make_and_measure(measurer, exported, precisions, energy_j=0.0, train_s=0.0)
    rank = RankResult(
        rank=0, train_s=0.0, steps=0, final_loss=math.nan, energy_j=0.0,
        prune=PruneReport(0.0, params, params), artifact=exported,
    )
    timing = {
        "wall_s": time.perf_counter() - t_start, TRAIN_S.key: 0.0, "run_s": 0.0, "export_s": exported.export_s,
        "quantize_s": made.quantize_s, "measure_s": made.measure_s,
    }
    return RunResult(config, [rank], 0.0, measurer.energy_source, timing, made.precisions)
