"""A long-lived training worker: loads the user file and its data once, then serves run after run."""

from __future__ import annotations

import ctypes
import hashlib
import os
import signal
import sys
import threading
import time
import traceback
from datetime import timedelta
from pathlib import Path

import torch  # noqa: F401  (imported here so the fork server holds it preloaded)
import torch.distributed as dist

# Imported here, not in worker_main: the fork server preloads this module, so a rank starts with them.
from effsearch.errors import EffsearchError
from effsearch.plugins import get_plugin
from effsearch.train.loop import train_rank
from effsearch.userfile import PYTHON, UserFile, fingerprint_of, load_user_file, user_line

__all__ = ["worker_main"]


def _die_with_parent(driver_pid: int) -> None:
    # The fork server is our parent: PDEATHSIG covers its death, the watchdog covers the driver's.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass

    def watch() -> None:
        while True:
            time.sleep(0.5)
            try:
                os.kill(driver_pid, 0)
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="effsearch-watchdog").start()


def _describe(exc: BaseException, rank: int, path: Path) -> str:
    if isinstance(exc, EffsearchError):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"rank {rank}{user_line(path, exc)}: {type(exc).__name__}: {text}"


def worker_main(slot: int, conn, user_file: str | bytes, driver_pid: int, store_port: int, timeout_s: float) -> None:
    """Serve RunSpecs from `conn` until it closes; answer ("ok", RankResult) or ("error", (line, traceback)).

    user_file: the file's path, or the pickled bytes of a registration made from Python (UserFile.pickled).
    Its first message is ("ready", timings and the fingerprint of its datasets), or ("error", ...) when the
    file or its data cannot be loaded.
    """
    entered = time.monotonic()  # system-wide: the driver compares it with when it asked for this rank
    _die_with_parent(driver_pid)
    # Ctrl-C reaches the whole process group: the driver handles it and stops the ranks itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pickled = user_file if isinstance(user_file, bytes) else None
    path = PYTHON if pickled is not None else Path(user_file)
    t0 = time.perf_counter()
    try:
        # Not at the top: imported in the driver (which starts the ranks), preload would load the file there.
        from effsearch.train.preload import cached

        # Forked from a server that already loaded the file and its data: reuse them (copy-on-write).
        loaded = cached(f"sha256:{hashlib.sha256(pickled).hexdigest()}" if pickled is not None else str(path))
        uf = loaded[0] if loaded else UserFile.from_pickled(pickled) if pickled is not None else load_user_file(path)
        t1 = time.perf_counter()
        if loaded:
            datasets, data = loaded[1], loaded[2]
        else:
            datasets = tuple(uf.registration.data())
            data = fingerprint_of(uf, datasets)
        t2 = time.perf_counter()
        store = dist.TCPStore("127.0.0.1", store_port, None, False, timeout=timedelta(seconds=timeout_s))
        t3 = time.perf_counter()
    except BaseException as exc:  # reported to the driver, which names the file
        conn.send(("error", (_describe(exc, slot, path), traceback.format_exc(), None)))
        return
    timings = {"entered": entered, "import_s": t1 - t0, "data_s": t2 - t1, "connect_s": t3 - t2}
    conn.send(("ready", {"pid": os.getpid(), **timings, "data": data}))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        spec, rank, world_size, prefix = msg
        try:
            meter_cls = get_plugin("energy_meter", spec.meter) if spec.meter else None
            # A machine-wide meter is read by rank 0 alone (once for the whole run); a per-process meter
            # by every rank, and the driver sums the readings.
            meter = meter_cls() if meter_cls is not None and (meter_cls.scope == "process" or rank == 0) else None
            store_of_run = dist.PrefixStore(prefix, store)
            result = train_rank(spec, rank=rank, world_size=world_size, store=store_of_run, uf=uf, datasets=datasets, meter=meter)
            conn.send(("ok", result))
        except BaseException as exc:
            try:
                conn.send(("error", (_describe(exc, rank, path), traceback.format_exc(), getattr(exc, "structural", None))))
            except (BrokenPipeError, OSError):
                return
            if isinstance(exc, KeyboardInterrupt):
                return
        sys.stdout.flush()
