"""Imported by the fork server: load the user file and its data once, so every rank forked later has them.

The driver names the file in EFFSEARCH_PRELOAD_USER_FILE before the server starts. A failure here is kept,
not raised (the server must start regardless); the rank then loads the file itself and reports the error.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["cached"]

_cache: dict[str, tuple[Any, tuple[Any, ...]]] = {}


def cached(path: str) -> tuple[Any, tuple[Any, ...]] | None:
    """(UserFile, datasets) loaded by the fork server for `path`, or None."""
    return _cache.get(path)


def _preload() -> None:
    path = os.environ.get("EFFSEARCH_PRELOAD_USER_FILE")
    if not path:
        return
    try:
        import torch

        # No OpenMP thread team may exist in a process that forks: a child would hang in its first
        # parallel region. One thread here never starts one; each rank sets its own count.
        torch.set_num_threads(1)
        from effsearch.userfile import load_user_file

        uf = load_user_file(path)
        _cache[path] = (uf, tuple(uf.registration.data()))
    except BaseException:  # noqa: BLE001 - the rank reloads and reports it
        _cache.clear()


_preload()
