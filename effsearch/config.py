"""What one training run is told before it starts: TrainConfig and its loader options.

Below both space/ (which derives a run's TrainConfig from the search dimensions) and train/ (which runs it),
so that neither imports the other; train/loaders.py chooses a run's loader options for its device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from effsearch.errors import UserFileError

__all__ = ["LoaderOptions", "TrainConfig", "check_loader"]


@dataclass(frozen=True)
class LoaderOptions:
    """torch DataLoader keyword arguments for a rank's training batches."""

    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = False
    prefetch_factor: int | None = None  # batches each worker reads ahead (torch's default 2 where None)

    def kwargs(self) -> dict[str, Any]:
        out = {"num_workers": self.num_workers, "pin_memory": self.pin_memory}
        if self.num_workers > 0:
            # Forked from the rank: a worker inherits its datasets and the user file's module, which a
            # fresh (spawned or fork-server) process could not import by name.
            out["multiprocessing_context"] = "fork"
            out["persistent_workers"] = self.persistent_workers
            if self.prefetch_factor is not None:
                out["prefetch_factor"] = self.prefetch_factor
        return out


_TYPES = {"num_workers": int, "pin_memory": bool, "persistent_workers": bool, "prefetch_factor": int}


def check_loader(loader: Any) -> dict[str, Any]:
    """register(loader=...) as a dict of known options with valid values; UserFileError otherwise."""
    if not isinstance(loader, dict):
        raise UserFileError(f"register(loader={loader!r}) must be a dict, e.g. loader={{'num_workers': 2}}")
    unknown = sorted(set(loader) - set(_TYPES))
    if unknown:
        raise UserFileError(f"register(loader=...): unknown option(s) {unknown}; known: {', '.join(_TYPES)}")
    for key, value in loader.items():
        kind = _TYPES[key]
        ok = isinstance(value, bool) if kind is bool else isinstance(value, int) and not isinstance(value, bool)
        if not ok or (kind is int and value < (1 if key == "prefetch_factor" else 0)):
            want = "True or False" if kind is bool else ("a whole number >= 1" if key == "prefetch_factor" else "a whole number >= 0")
            raise UserFileError(f"register(loader={{'{key}': {value!r}}}): {key} must be {want}")
    if loader.get("num_workers") == 0 and (loader.get("persistent_workers") or loader.get("prefetch_factor")):
        raise UserFileError(
            "register(loader=...): persistent_workers and prefetch_factor need worker processes; set num_workers >= 1 or drop them"
        )
    return dict(loader)


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs to know, fixed before it starts.

    A searched training knob is a field here and an entry of space/catalog.py, which fills it (config_of).
    """

    batch_size: int
    lr: float
    lr_schedule: str
    clip_norm: float
    prune_ratio: float
    world_size: int
    epochs: int
    seed: int
    optimizer: str = "adamw"
    warmup_frac: float = 0.05
    prune_importance: str = "l2"
    prune_when: str = "start"
    finetune_frac: float = 0.34
    train_precision: str = "fp32"
    distill: float = 0.0
    distill_temperature: float = 4.0
    loader: LoaderOptions = field(default_factory=LoaderOptions)  # chosen per run (train/loaders.py)
