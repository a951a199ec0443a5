"""`--launcher local`: the workers as processes of this machine, its cores (or GPUs) split between them."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from effsearch.errors import StudyError
from effsearch.launch.base import Share, parse_options, worker_command

__all__ = ["LocalLauncher"]


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@dataclass
class LocalWorker:
    """A worker process; `pid` names it to a user who wants to stop one."""

    name: str
    proc: subprocess.Popen
    log: Path | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the worker queues its run again and exits


class LocalLauncher:
    """N worker processes here: each pinned to its own cores (or given its own GPUs)."""

    name = "local"
    leaves_machine = False

    def __init__(self, options: Sequence[str] = ()) -> None:
        # Each worker's output goes to its own file: N front tables and progress lines would garble the terminal.
        self.folder = Path(parse_options(options, ("folder",), self.name).get("folder", "worker-logs")).resolve()
        self._cores = sorted(os.sched_getaffinity(0))

    def share(self, n: int) -> Share:
        from effsearch.train.pool import available_cores

        cores, gpus = available_cores(), _gpus()
        if gpus:
            if n > gpus:
                raise StudyError(f"--workers {n}: this machine has {gpus} GPUs, one at least per worker; pass --workers {gpus} or fewer")
            return Share(cpus=max(1, cores // n), gpus=gpus // n)
        if n > cores:
            raise StudyError(f"--workers {n}: this machine has {cores} usable cores, one at least per worker; pass --workers {cores} or fewer")
        return Share(cpus=cores // n)

    def start(self, n: int, argv: Sequence[str], share: Share) -> list[LocalWorker]:
        workers = []
        # GPU indices as this process sees them (a CUDA_VISIBLE_DEVICES already set names the real ones).
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if os.environ.get("CUDA_VISIBLE_DEVICES") else None
        for i in range(n):
            env = {**os.environ, **share.env, "OMP_NUM_THREADS": str(share.cpus), "MKL_NUM_THREADS": str(share.cpus)}
            if share.gpus:
                mine = range(i * share.gpus, (i + 1) * share.gpus)
                env["CUDA_VISIBLE_DEVICES"] = ",".join(visible[g] if visible else str(g) for g in mine)
            cores = self._cores[i * share.cpus:(i + 1) * share.cpus] if len(self._cores) >= n * share.cpus else None

            def pin(cores: list[int] | None = cores) -> None:
                # Each worker on its own cores: its ranks and their threads do not compete with another's.
                if cores:
                    os.sched_setaffinity(0, cores)

            self.folder.mkdir(parents=True, exist_ok=True)
            log = self.folder / f"worker-{i}.log"
            with open(log, "w") as out:
                proc = subprocess.Popen(worker_command(argv), env=env, preexec_fn=pin, stdout=out, stderr=subprocess.STDOUT)
            workers.append(LocalWorker(f"worker {i} (pid {proc.pid})", proc, log))
        return workers
