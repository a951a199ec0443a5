"""A dataset's samples as every stage reads them: (input, target) pairs, batched by one collate function.

Samples come in two forms. The classic one is an `(input, target)` pair. The other is a dict as a
tokenizer gives it (`input_ids`, `attention_mask`, `token_type_ids`, ...), whose target is the field
`register(target=...)` names, else `labels`, else `label`; that field is taken out, and the rest is the
input the model is called with as keywords. `register(collate=...)` (e.g. transformers'
DataCollatorWithPadding) batches the samples as the user wrote them; the target is taken out of its
batch the same way. Every loader effsearch makes (training, validation, calibration, latency) comes
from `loader`, so all of them batch alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from effsearch.errors import UserFileError

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

# torch is imported where used: register() is imported by every user file, before any model is built.

__all__ = ["TARGET_KEYS", "SampleData", "Samples", "collate_of", "loader", "target_key"]

# Where a dict sample keeps its target when register(target=...) names none, in order.
TARGET_KEYS = ("labels", "label")


def target_key(item: Mapping[str, Any], named: str | None) -> str:
    """The field holding a dict sample's target; UserFileError where there is none."""
    for key in ((named,) if named else TARGET_KEYS):
        if key in item:
            return key
    wanted = repr(named) if named else "'labels' or 'label'"
    raise UserFileError(
        f"a dict sample has no target field {wanted}: its keys are {list(item)}; "
        "name the target's field with register(target=...)"
    )


def _tensor(value: Any) -> Any:
    # Token lists and numbers as a tokenizer gives them without return_tensors; other values are left for
    # the input check to name (inputs.check_input).
    import numpy as np
    import torch

    if isinstance(value, (list, np.ndarray, int, float)) and not isinstance(value, bool):
        return torch.as_tensor(value)
    return value


class Samples:
    """A user's map-style dataset whose items are read as (input, target), with the collate function of its batches.

    key: the target's field of dict samples, or None for (input, target) pairs.
    user_collate: register(collate=...), called on the samples as the dataset gives them.
    """

    def __init__(self, dataset: Any, key: str | None, user_collate: Callable[[list[Any]], Any] | None) -> None:
        self.dataset = dataset
        self.key = key
        self.user_collate = user_collate

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]
        if self.key is None:
            return item
        if not isinstance(item, Mapping) or self.key not in item:
            target_key(item if isinstance(item, Mapping) else {}, self.key)  # raises, naming the keys
        return {k: v for k, v in item.items() if k != self.key}, item[self.key]

    def collate(self, batch: list[Any]) -> tuple[Any, Any]:
        """A batch of samples as (input, target): torch's default, or the user's with the target taken out."""
        from torch.utils.data import default_collate

        if self.user_collate is None:
            return default_collate([({k: _tensor(v) for k, v in x.items()}, _tensor(y)) for x, y in batch])
        if self.key is None:
            out = self.user_collate(batch)
        else:
            out = self.user_collate([{**x, self.key: y} for x, y in batch])
        if isinstance(out, Mapping):
            out = dict(out)
            # DataCollatorWithPadding renames label to labels.
            key = next((k for k in (self.key, *TARGET_KEYS) if k in out), None)
            if key is None:
                raise UserFileError(f"register(collate=...) returned a batch without the target: its keys are {list(out)}")
            y = out.pop(key)
            return out, y
        if isinstance(out, (tuple, list)) and len(out) == 2:
            return out[0], out[1]
        raise UserFileError(f"register(collate=...) must return a dict holding the target, or (input, target); got {type(out).__name__}")


def collate_of(dataset: Any) -> Callable[[list[Any]], Any] | None:
    """The collate function of a dataset's batches (looking through torch Subsets), or None: torch's default."""
    from torch.utils.data import Subset

    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset.collate if isinstance(dataset, Samples) else None


def loader(dataset: Any, **kwargs: Any) -> DataLoader:
    """A DataLoader over `dataset` that batches it with its collate function (collate_of)."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, collate_fn=collate_of(dataset), **kwargs)


@dataclass(frozen=True)
class SampleData:
    """register(data=...) as every process calls it: the user's factory, its datasets read as Samples.

    Datasets of (input, target) pairs with no collate function come back as the factory made them.
    The form is read from the validation set's first item (validation items are fixed; a training item
    may be augmented at random on every read).
    """

    data: Callable[[], Any]
    target: str | None = None
    collate: Callable[[list[Any]], Any] | None = None

    def __call__(self) -> Any:
        datasets = self.data()
        if not (isinstance(datasets, (tuple, list)) and len(datasets) == 2):
            return datasets  # the user file's check says what is wrong
        try:
            first = datasets[1][0] if len(datasets[1]) else None
        except Exception:
            return datasets  # reading an item fails again, where the probe names it
        if self.target is not None and first is not None and not isinstance(first, Mapping):
            raise UserFileError(
                f"register(target={self.target!r}) names a field of dict samples, but the samples are {type(first).__name__}s; "
                "drop target= or return dicts"
            )
        key = target_key(first, self.target) if isinstance(first, Mapping) else None
        if key is None and self.collate is None:
            return datasets
        return tuple(Samples(ds, key, self.collate) for ds in datasets)
