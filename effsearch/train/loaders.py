"""The training loader's options: worker processes, pinned memory, persistent workers.

Defaults suit the device: on CPU the rank's cores are its compute threads (threads per rank = usable
cores // world size), so batches are read in the rank itself; on a GPU, worker processes read the next
batches while the GPU trains on this one, into pinned memory for an asynchronous copy, and stay alive
from epoch to epoch. `register(loader={...})` overrides any of them (checked by config.check_loader); a run
records what it used.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from effsearch.config import LoaderOptions

__all__ = ["loader_options"]

# The most worker processes a GPU rank starts by default.
GPU_WORKERS = 4


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
