"""The user's metric over the whole validation set, from onnxruntime outputs of the artifact."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effsearch.onnx_export import INPUT_NAME
from effsearch.runtime import ort_session

__all__ = ["ArrayData", "stack_dataset", "ort_outputs", "ort_metric"]


@dataclass(frozen=True)
class ArrayData:
    """A dataset as two stacked arrays (inputs, targets)."""

    inputs: np.ndarray
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.inputs)


def stack_dataset(dataset: Any, limit: int | None = None) -> ArrayData:
    """Stack a map-style dataset of (input, target) into arrays, keeping the input dtype."""
    from torch.utils.data import DataLoader

    xs, ys = [], []
    n = 0
    for x, y in DataLoader(dataset, batch_size=256, shuffle=False):
        xs.append(x)
        ys.append(y)
        n += len(x)
        if limit is not None and n >= limit:
            break
    inputs = torch.cat(xs)
    targets = torch.cat(ys)
    if limit is not None:
        inputs, targets = inputs[:limit], targets[:limit]
    return ArrayData(inputs.numpy(), targets)


def ort_outputs(path: Path, data: ArrayData, batch_size: int = 256, threads: int = 1) -> torch.Tensor:
    session = ort_session(path, threads=threads)
    outs = [
        session.run(None, {INPUT_NAME: data.inputs[i : i + batch_size]})[0]
        for i in range(0, len(data), batch_size)
    ]
    return torch.from_numpy(np.concatenate(outs)).float()


def ort_metric(path: Path, data: ArrayData, metric: Callable[[Any, Any], float], threads: int = 1) -> float:
    """The metric computed once over all validation outputs and targets concatenated."""
    return float(metric(ort_outputs(path, data, threads=threads), data.targets))
