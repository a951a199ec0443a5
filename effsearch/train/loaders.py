"""The training loader's options: worker processes, pinned memory, persistent workers.

Defaults suit the device: on CPU the rank's cores are its compute threads (threads per rank = usable
cores // world size), so batches are read in the rank itself; on a GPU, worker processes read the next
batches while the GPU trains on this one, into pinned memory for an asynchronous copy, and stay alive
from epoch to epoch. `register(loader={...})` overrides any of them; a run records what it used.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from effsearch.errors import UserFileError

__all__ = ["LoaderOptions", "loader_options", "check_loader"]

# The most worker processes a GPU rank starts by default.
GPU_WORKERS = 4


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


def loader_options(given: dict[str, Any] | None, *, device: str, world_size: int, cores: int) -> LoaderOptions:
    """The options a rank of this run uses: the device's defaults, then what the registration set."""
    if device == "cuda":
        workers = min(GPU_WORKERS, max(1, cores // max(1, world_size)))
        base = LoaderOptions(num_workers=workers, pin_memory=True, persistent_workers=True)
    else:
        base = LoaderOptions()
    opts = replace(base, **(given or {}))  # check_loader accepted only LoaderOptions' fields
    if opts.num_workers == 0:
        opts = replace(opts, persistent_workers=False, prefetch_factor=None)
    return opts
