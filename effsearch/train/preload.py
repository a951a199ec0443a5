"""Imported by the fork server: load the user file and its data once, so every rank forked later has them.

The datasets' fingerprint is taken here too, once: each rank reports it, and the driver refuses ranks whose
data differ from its own (an unseeded split gives each process its own).

The driver names the file in EFFSEARCH_PRELOAD_USER_FILE before the server starts, or, for a registration made
from Python, a file of its pickled bytes in EFFSEARCH_PRELOAD_REGISTRATION. A failure here is kept, not raised
(the server must start regardless); the rank then loads the file itself and reports the error.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["cached"]

_cache: dict[str, tuple[Any, tuple[Any, ...], Any]] = {}


def cached(path: str) -> tuple[Any, tuple[Any, ...], Any] | None:
    """(UserFile, datasets, their DataFingerprint) loaded by the fork server for `path`, or None.

    path: the user file's, or "sha256:<hex>" of a registration's pickled bytes.
    """
    return _cache.get(path)


def _preload() -> None:
    path = os.environ.get("EFFSEARCH_PRELOAD_USER_FILE")
    pickled = os.environ.get("EFFSEARCH_PRELOAD_REGISTRATION")
    if not path and not pickled:
        return
    try:
        import torch

        # No OpenMP thread team may exist in a process that forks: a child would hang in its first
        # parallel region. One thread here never starts one; each rank sets its own count.
        torch.set_num_threads(1)
        # DDP's constructor imports torch._dynamo (and sympy): 3.5 s here, 9 s on a busy machine, that each
        # fresh rank would pay inside its first run's training window. Here it is paid once, and not by
        # the driver, which never imports this module.
        import torch._dynamo  # noqa: F401

        from pathlib import Path

        from effsearch.userfile import UserFile, fingerprint_of, load_user_file

        uf = UserFile.from_pickled(Path(pickled).read_bytes()) if pickled else load_user_file(path)
        datasets = tuple(uf.registration.data())
        _cache[f"sha256:{uf.sha256}" if pickled else path] = (uf, datasets, fingerprint_of(uf, datasets))
    except BaseException:  # noqa: BLE001 - the rank reloads and reports it
        _cache.clear()


_preload()
