"""The user's metric over the whole validation set, from onnxruntime outputs of the artifact.

The validation set is read in batches (Streamed): memory holds one batch of inputs plus the outputs and
targets the metric is computed on, whatever the set's size. Bounded samples (calibration, the latency
batch) are stacked (stack_dataset with a limit).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effsearch.inputs import Feed, as_feed, feed, feed_len, feeder, is_sequence, names, parts
from effsearch.runtime import ort_session
from effsearch.samples import loader

__all__ = ["ArrayData", "Streamed", "stack_dataset", "ort_outputs", "ort_metric", "BATCH"]

# Samples per onnxruntime call (and per batch read) while the metric is computed.
BATCH = 256


@dataclass(frozen=True)
class ArrayData:
    """A dataset stacked whole (inputs, targets): for samples small enough to hold.

    inputs: an array for a single-tensor input, else a feed (name -> array, inputs.py).
    """

    inputs: np.ndarray | Feed
    targets: torch.Tensor

    def __len__(self) -> int:
        return feed_len(self.inputs)

    def batches(self, batch_size: int = BATCH) -> Iterator[tuple[Feed, torch.Tensor]]:
        every = as_feed(self.inputs)
        for i in range(0, len(self), batch_size):
            yield {k: v[i : i + batch_size] for k, v in every.items()}, self.targets[i : i + batch_size]


def _release_freed() -> None:
    """Hand the pages of freed batches back to the system (glibc's malloc_trim; elsewhere nothing).

    Each batch is allocated and freed in turn while the outputs the metric needs pile up between them, so
    glibc's heap cannot shrink from its top: measured on 41,000 3x64x64 images, the driver's RssAnon grew
    by 1.5 GB without this, and stayed within a few hundred MB with it (benchmarks/data_scale.py).
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc() -> Any:
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc()


@dataclass(frozen=True)
class Streamed:
    """A map-style dataset read in order, one batch at a time, never stacked whole."""

    dataset: Any

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, batch_size: int = BATCH) -> Iterator[tuple[Feed, torch.Tensor]]:
        for x, y in loader(self.dataset, batch_size=batch_size, shuffle=False):
            yield feed(x), y
            del x
            _release_freed()

    def head(self, n: int) -> np.ndarray | Feed:
        """The first n inputs, as one batch (fewer where the set is smaller): an array, or a feed."""
        return stack_dataset(self.dataset, limit=n).inputs


def _cat(batches: list[torch.Tensor]) -> torch.Tensor:
    """Batches of one part concatenated; token parts padded with 0 (a padding mask's "not there") to the
    longest, where a collate function padded each batch to its own longest sample."""
    longest = max(t.shape[1] for t in batches) if is_sequence(batches[0]) else None
    if longest is not None and any(t.shape[1] != longest for t in batches):
        batches = [torch.nn.functional.pad(t, (0, 0) * (t.dim() - 2) + (0, longest - t.shape[1])) for t in batches]
    return torch.cat(batches)


def stack_dataset(dataset: Any, limit: int | None = None) -> ArrayData:
    """Stack a map-style dataset of (input, target) into arrays, keeping the input dtype.

    With a limit the samples are read as one batch, so that a collate function pads them alike.
    """
    xs, ys = [], []
    n = 0
    for x, y in loader(dataset, batch_size=limit or 256, shuffle=False):
        xs.append(x)
        ys.append(y)
        n += len(y)
        if limit is not None and n >= limit:
            break
    targets = torch.cat(ys)
    stacked = [_cat(list(p)) for p in zip(*(parts(x) for x in xs))]
    if limit is not None:
        stacked, targets = [t[:limit] for t in stacked], targets[:limit]
    if isinstance(xs[0], torch.Tensor):
        return ArrayData(stacked[0].numpy(), targets)
    return ArrayData({n: t.numpy() for n, t in zip(names(xs[0]), stacked)}, targets)


def ort_outputs(path: Path, data: ArrayData | Streamed, batch_size: int = BATCH, threads: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(outputs, targets) of every sample, in order: the inputs pass through one batch at a time."""
    session = ort_session(path, threads=threads)
    outs, targets = [], []
    fed = feeder(session)
    for x, y in data.batches(batch_size):
        outs.append(session.run(None, fed(x))[0])
        targets.append(y)
    return torch.from_numpy(np.concatenate(outs)).float(), torch.cat(targets)


def ort_metric(path: Path, data: ArrayData | Streamed, metric: Callable[[Any, Any], float], threads: int = 1) -> float:
    """The metric computed once over all validation outputs and targets concatenated."""
    return float(metric(*ort_outputs(path, data, threads=threads)))
