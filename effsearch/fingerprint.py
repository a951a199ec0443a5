"""What tells two results of a user's data() apart, so that no validation sample is ever trained on.

data() is called in several processes (the driver, the ranks' fork server, a rank that reloads the file,
export); an unseeded random split gives each its own split. Sizes, a Subset's indices and a hash of fixed
validation items are compared (not training items, which may be augmented at random).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effsearch.errors import UserFileError

__all__ = ["FINGERPRINT_ITEMS", "SEED_THE_SPLIT", "DataFingerprint", "check_same_data", "data_fingerprint"]

# How to make a data() that splits at random give the same split in every process.
SEED_THE_SPLIT = "seed the split, e.g. random_split(..., generator=torch.Generator().manual_seed(0))"
# Validation items hashed per fingerprint: enough to see another split, few enough to cost nothing.
FINGERPRINT_ITEMS = 32


@dataclass(frozen=True)
class DataFingerprint:
    """What tells two results of data() apart: sizes, the split's indices, a hash of fixed validation items.

    Training items are not hashed: they may be augmented at random on every access.
    split hashes are "" where the dataset is not a torch Subset.
    """

    n_train: int
    n_val: int
    train_split: str
    val_split: str
    val_items: str

    def difference(self, other: DataFingerprint) -> str | None:
        """What differs from `other`, in words, or None when nothing does."""
        if (self.n_train, self.n_val) != (other.n_train, other.n_val):
            return (
                f"split sizes (training {self.n_train} vs {other.n_train}, validation {self.n_val} vs {other.n_val})"
            )
        if self.train_split != other.train_split:
            return "training split (the Subset's indices)"
        if self.val_split != other.val_split:
            return "validation split (the Subset's indices)"
        if self.val_items != other.val_items:
            return "validation items"
        return None


def _hash_item(h: Any, obj: Any) -> None:
    """Feed one dataset item (tensors, arrays, numbers, strings, nested in tuples, lists, dicts) to a hash."""
    import numpy as np
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, np.ndarray):
        h.update(f"A{obj.dtype}{obj.shape}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, (tuple, list)):
        h.update(f"L{len(obj)}".encode())
        for x in obj:
            _hash_item(h, x)
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}".encode())
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode())
            _hash_item(h, obj[k])
    elif obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, np.generic)):
        h.update(repr(obj).encode())
    elif callable(getattr(obj, "tobytes", None)):  # PIL images and the like
        h.update(type(obj).__name__.encode())
        h.update(obj.tobytes())
    else:
        h.update(type(obj).__qualname__.encode())  # a default repr holds a memory address: leave it out


def _split_hash(ds: Any) -> str:
    """A hash of the indices of a (possibly nested) torch Subset and the size beneath it; "" for no Subset."""
    import numpy as np
    from torch.utils.data import Subset

    from effsearch.samples import Samples

    while isinstance(ds, Samples):  # dict samples read through their wrapper: the user's Subset is beneath
        ds = ds.dataset
    if not isinstance(ds, Subset):
        return ""
    h = hashlib.sha256()
    while isinstance(ds, Subset):
        h.update(np.asarray(ds.indices, dtype=np.int64).tobytes())
        h.update(b"|")
        ds = ds.dataset
    try:
        h.update(str(len(ds)).encode())
    except TypeError:
        pass
    return h.hexdigest()[:16]


def data_fingerprint(datasets: tuple[Any, Any]) -> DataFingerprint:
    """The fingerprint of (train, validation) as data() returned them."""
    train, val = datasets
    n = len(val)
    k = min(FINGERPRINT_ITEMS, n)
    h = hashlib.sha256()
    for i in sorted({j * n // k for j in range(k)}):
        _hash_item(h, val[i])
    return DataFingerprint(len(train), n, _split_hash(train), _split_hash(val), h.hexdigest()[:16])


def check_same_data(path: Path, a: DataFingerprint, b: DataFingerprint, *, where: str) -> None:
    """Refuse, in one line naming the file and the fix, two results of data() that differ.

    where: which two calls, e.g. "two calls" or "the driver and rank process 1".
    """
    what = a.difference(b)
    if what is None:
        return
    raise UserFileError(
        f"{path.name}: data() returned different {what} in {where}, so training could see the samples the "
        f"metric is measured on; {SEED_THE_SPLIT} (and seed anything else random in data())"
    )
