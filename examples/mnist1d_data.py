"""MNIST-1D's sequences for the MNIST-1D examples: the study's split and the held-out test set.

MNIST-1D (Greydanus & Kobak, ICML 2024) is generated locally by the `mnist1d` package (never its download
path): 4,000 training and 1,000 test sequences of 40 steps, 10 classes. The study sees only the 4,000
training sequences, split 3,000 / 1,000 (seeded, stratified) into training and validation; the 1,000 test
sequences are kept for benchmarks/headline.py, which scores final fronts on them.

Generating takes about 4 s on one core, and every rank process calls data(), so the generated arrays are
kept in examples/checkpoints/mnist1d.npz (not committed) and in memory.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

CACHE = Path(__file__).resolve().parent / "checkpoints" / "mnist1d.npz"
VALIDATION = 1000
SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def arrays() -> dict[str, np.ndarray]:
    """x (4000, 40), y, x_test (1000, 40), y_test: MNIST-1D at the package's default settings."""
    if CACHE.exists():
        with np.load(CACHE) as z:
            return {k: z[k] for k in ("x", "y", "x_test", "y_test")}
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    out = {"x": d["x"].astype(np.float32), "y": d["y"].astype(np.int64),
           "x_test": d["x_test"].astype(np.float32), "y_test": d["y_test"].astype(np.int64)}
    CACHE.parent.mkdir(exist_ok=True)
    partial = CACHE.with_name(f"mnist1d.{os.getpid()}.partial.npz")
    np.savez(partial, **out)
    os.replace(partial, CACHE)  # whole or not at all, with several rank processes starting at once
    return out


def split_indices() -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) indices into the 4,000 training sequences: 1,000 for validation, stratified."""
    from sklearn.model_selection import train_test_split

    y = arrays()["y"]
    return train_test_split(np.arange(len(y)), test_size=VALIDATION, random_state=SPLIT_SEED, stratify=y)


def datasets(shape: tuple[int, ...]) -> tuple[TensorDataset, TensorDataset]:
    """The study's (training 3,000, validation 1,000) datasets, each sample reshaped to `shape`."""
    a = arrays()
    x = torch.from_numpy(a["x"]).reshape(-1, *shape)
    y = torch.from_numpy(a["y"])
    train, val = split_indices()
    return TensorDataset(x[train], y[train]), TensorDataset(x[val], y[val])


def test_dataset(shape: tuple[int, ...]) -> TensorDataset:
    """The 1,000 test sequences the study never sees."""
    a = arrays()
    return TensorDataset(torch.from_numpy(a["x_test"]).reshape(-1, *shape), torch.from_numpy(a["y_test"]))
