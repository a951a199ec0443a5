"""A pool of long-lived rank processes, forked from a server with torch preloaded, serving run after run."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
from multiprocessing import util as mp_util
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch.distributed as dist

from effsearch.errors import TrialError, UserFileError
from effsearch.userfile import UserFile
from effsearch.train.loop import RankResult, RunSpec
from effsearch.fingerprint import DataFingerprint, check_same_data

__all__ = ["WorkerPool", "available_cores", "hardware_world_sizes"]

log = logging.getLogger(__name__)


def available_cores() -> int:
    """Cores this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def hardware_world_sizes() -> tuple[str, int]:
    """("cuda", GPU count) where CUDA devices exist, else ("cpu", usable cores)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return "cuda", torch.cuda.device_count()
    return "cpu", available_cores()


def _preload_file(pickled: bytes | None) -> str | None:
    """A registration's bytes in a file the fork server preloads (preload.py), or None for a user file."""
    if pickled is None:
        return None
    fd, name = tempfile.mkstemp(prefix="effsearch-registration-", suffix=".pkl")
    with os.fdopen(fd, "wb") as f:
        f.write(pickled)
    return name


def _kill_at_exit(workers: dict[int, Any]) -> None:
    for w in list(workers.values()):
        if w.process.is_alive():
            w.process.kill()
        w.process.join(timeout=5)


@dataclass
class _Worker:
    process: Any
    conn: Connection
    spawned: float  # time.monotonic() when asked for (a system-wide clock: the rank reports on it too)
    data: DataFingerprint | None = None  # of the datasets the rank trains on, from its ready message


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """Start processes that do not run the driver's __main__ again before their target.

    multiprocessing re-runs the parent's main script or module in every forkserver child, in case the
    target lives there. A rank's target lives in effsearch.train.worker, so that re-run only costs time:
    importing what the `effsearch` script, a benchmark or pytest imports took 60-110 ms of CPU per rank
    start here, most of a replacement's start. (The fork server's own "__main__" preload would pay it
    once, but Python 3.11's forkserver never receives the main path it needs.)
    """
    from multiprocessing import spawn

    original = spawn.get_preparation_data

    def preparation_data(name: str) -> dict[str, Any]:
        data = original(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    spawn.get_preparation_data = preparation_data
    try:
        yield
    finally:
        spawn.get_preparation_data = original


class WorkerPool:
    """Rank processes for one user file. A worker that dies or whose run fails is replaced, never reused.

    user_file: the file's path, or a UserFile; one registered from Python reaches the ranks as its pickled bytes.
    """

    def __init__(self, user_file: Path | UserFile, collective_timeout_s: float = 60.0, start_timeout_s: float = 300.0) -> None:
        pickled = user_file.pickled if isinstance(user_file, UserFile) else None
        self._path = user_file.path if isinstance(user_file, UserFile) else Path(user_file)
        # What a rank loads: the file's path, or the registration's bytes (sent with the process's arguments).
        self._user_file: str | bytes = pickled if pickled is not None else str(self._path)
        self._preload_file = _preload_file(pickled)
        self._timeout = collective_timeout_s
        self._start_timeout = start_timeout_s
        # Idle OpenMP threads that spin steal the cores other ranks (or other jobs) need: on a busy
        # 2-core machine a 2-thread rank trained 15-30x slower with spinning threads than without.
        # The fork server reads this once, when it starts and imports torch.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        # The server also loads the user file and its data once, so a rank starts in a fraction of a second.
        os.environ["EFFSEARCH_PRELOAD_USER_FILE"] = "" if pickled is not None else str(self._path)
        os.environ["EFFSEARCH_PRELOAD_REGISTRATION"] = self._preload_file or ""
        self._ctx = mp.get_context("forkserver")
        # effsearch.run.pipeline holds the rank-0 stage a RunSpec names (RunSpec.finish), unpickled in every rank.
        self._ctx.set_forkserver_preload(["effsearch.train.worker", "effsearch.run.pipeline", "effsearch.train.preload"])
        self._store = dist.TCPStore(
            "127.0.0.1", 0, None, True, timeout=timedelta(seconds=collective_timeout_s), wait_for_workers=False
        )
        self._workers: dict[int, _Worker] = {}
        # Ranks are not daemonic: multiprocessing would wait for them at the driver's exit. This finalizer
        # runs before that wait (exitpriority >= 0 comes first) and kills any rank still alive.
        mp_util.Finalize(self, _kill_at_exit, args=(self._workers,), exitpriority=10)
        self._busy: set[int] = set()
        self.starts = 0
        self.start_seconds: list[float] = []
        # Per started worker, in seconds: fork_s (asked for -> its target runs), import_s, data_s, connect_s
        # (in the rank), ready_s (asked for -> its ready message read here).
        self.ready: list[dict[str, float]] = []

    def _spawn(self, slot: int) -> _Worker:
        from effsearch.train.worker import worker_main

        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=worker_main,
            args=(slot, child, self._user_file, os.getpid(), self._store.port, self._timeout),
            name=f"effsearch-rank-{slot}",
            # Not daemonic, so that a rank can start DataLoader worker processes; it still dies with the
            # driver (worker._die_with_parent) and the pool kills it at exit (_kill_at_exit).
            daemon=False,
        )
        spawned = time.monotonic()
        with _without_main():
            proc.start()
        child.close()
        self.starts += 1
        return _Worker(proc, parent, spawned)

    def ensure(self, n: int) -> None:
        """Have n live, ready workers (slots 0..n-1), starting the missing ones in parallel."""
        t0 = time.perf_counter()
        fresh = {}
        for slot in range(n):
            w = self._workers.get(slot)
            if w is None or not w.process.is_alive():
                fresh[slot] = self._workers[slot] = self._spawn(slot)
        for slot, w in fresh.items():
            remaining = self._start_timeout - (time.perf_counter() - t0)
            if not w.conn.poll(max(0.0, remaining)):
                self._discard(slot)
                raise TrialError(f"rank process {slot} did not start within {self._start_timeout:.0f} s")
            try:
                kind, payload = w.conn.recv()
            except EOFError:
                code = w.process.exitcode
                self._discard(slot)
                raise TrialError(f"rank process {slot} died while starting (exit code {code})") from None
            if kind == "error":
                self._discard(slot)
                raise UserFileError(payload[0])
            w.data = payload.pop("data", None)
            entered = payload.pop("entered")
            now = time.monotonic()
            self.ready.append({"slot": slot, "fork_s": entered - w.spawned, **payload, "ready_s": now - w.spawned})
        if fresh:
            self.start_seconds.append(time.perf_counter() - t0)

    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers.values() if w.process.is_alive()]

    def _discard(self, slot: int) -> None:
        w = self._workers.pop(slot, None)
        if w is None:
            return
        if w.process.is_alive():
            w.process.kill()
        w.process.join(timeout=5)
        w.conn.close()

    def run(self, spec: RunSpec, world_size: int, timeout_s: float | None = None) -> list[RankResult]:
        """Run one training run on ranks 0..world_size-1; any rank's failure fails the run with its reason.

        A rank whose datasets differ from spec.data (the driver's) is refused with a UserFileError before
        anything trains: it would train on samples the driver measures the metric on.
        """
        self.ensure(world_size)
        prefix = f"run-{uuid.uuid4().hex}/"
        workers = {r: self._workers[r] for r in range(world_size)}
        if spec.data is not None:
            for rank, w in workers.items():
                if w.data is not None:
                    check_same_data(self._path, spec.data, w.data, where=f"the driver and rank process {rank}")
        self._busy = set(workers)
        for rank, w in workers.items():
            w.conn.send((spec, rank, world_size, prefix))
        results: dict[int, RankResult] = {}
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        error: tuple[str, str, str | None] | None = None
        while len(results) < world_size and error is None:
            pending = {w.conn: r for r, w in workers.items() if r not in results}
            sentinels = {w.process.sentinel: r for r, w in workers.items() if r not in results}
            wait_s = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            for ready in wait([*pending, *sentinels], timeout=wait_s):
                if ready in pending:
                    rank = pending[ready]
                    try:
                        kind, payload = ready.recv()
                    except (EOFError, OSError):
                        continue  # the sentinel reports the death
                    if kind == "ok":
                        results[rank] = payload
                    else:
                        error = payload
                        break
                elif ready in sentinels:
                    rank = sentinels[ready]
                    workers[rank].process.join(timeout=1)
                    code = workers[rank].process.exitcode
                    how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
                    error = (f"rank {rank} died ({how}); a killed process is often the kernel's OOM killer", "", None)
                    break
            if error is None and deadline is not None and time.monotonic() >= deadline:
                error = (f"timeout after {timeout_s:g} s", "", None)
        if error is not None:
            # The surviving ranks may sit in a collective: replace every worker of this run.
            for r in workers:
                self._discard(r)
            log.debug("run failed: %s\n%s", error[0], error[1])
            raise TrialError(*error)
        self._busy = set()
        return [results[r] for r in range(world_size)]

    def close(self) -> None:
        """Stop every worker: idle ones are asked to exit, ones still in a run (interrupted) are killed."""
        for slot in list(self._busy):
            self._discard(slot)
        self._busy = set()
        for slot, w in list(self._workers.items()):
            try:
                w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for slot in list(self._workers):
            w = self._workers[slot]
            w.process.join(timeout=3)
            self._discard(slot)
        if self._preload_file:
            Path(self._preload_file).unlink(missing_ok=True)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
