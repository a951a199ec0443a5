"""`--launcher slurm`: the workers as one SLURM job array through submitit, one job per worker.

Before a preemption or the time limit SLURM sends SIGUSR2 (`signal_delay_s` ahead) and then SIGTERM: the
worker fails its running trial as "interrupted", queues it again at once and exits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effsearch.errors import StudyError
from effsearch.launch.base import Share, int_option, parse_options, run_worker

__all__ = ["OPTIONS", "SlurmLauncher", "slurm_parameters"]

OPTIONS = ("partition", "time", "cpus_per_worker", "gpus_per_worker", "mem", "signal_delay_s", "folder", "cluster")


def _submitit() -> Any:
    try:
        import submitit
    except ImportError as exc:
        raise StudyError("--launcher slurm needs submitit: pip install 'effsearch[slurm]'") from exc
    return submitit


def slurm_parameters(options: dict[str, str], n: int, name: str) -> dict[str, Any]:
    """submitit's parameters (AutoExecutor names) for `n` workers: SLURM's own ones are `slurm_`-prefixed,
    and submitit's local executor ignores them."""
    delay = int_option(options, "signal_delay_s", 120)
    params: dict[str, Any] = {
        "name": name,
        "timeout_min": int_option(options, "time", 60),
        "cpus_per_task": int_option(options, "cpus_per_worker", 1),
        "tasks_per_node": 1,
        "nodes": 1,
        "slurm_array_parallelism": n,
        "slurm_signal_delay_s": delay,
        # SIGUSR2, not submitit's own SIGUSR1 (which checkpoints a Python function): the worker requeues its run.
        "slurm_additional_parameters": {"signal": f"USR2@{delay}"},
    }
    gpus = int_option(options, "gpus_per_worker", 0)
    if gpus:
        params["gpus_per_node"] = gpus
    if options.get("partition"):
        params["slurm_partition"] = options["partition"]
    if options.get("mem"):
        params["slurm_mem"] = options["mem"]
    return params


@dataclass
class SlurmWorker:
    name: str
    job: Any

    @property
    def log(self) -> Path | None:
        return Path(self.job.paths.stderr)

    def poll(self) -> int | None:
        if not self.job.done():
            return None
        try:
            return int(self.job.result())
        except Exception:  # the job failed or was cancelled: its error is in its log under the folder
            return 1

    def cancel(self) -> None:
        self.job.cancel(check=False)


class SlurmLauncher:
    """One job per worker, submitted together as an array; its logs under `folder` (default: slurm-logs)."""

    name = "slurm"

    def __init__(self, options: Sequence[str] = ()) -> None:
        self.options = parse_options(options, OPTIONS, self.name)
        self.cluster = self.options.get("cluster", "slurm")
        if self.cluster not in ("slurm", "local"):
            raise StudyError(f"--launcher-option cluster={self.cluster}: expected slurm, or local (submitit's local executor, for a test)")
        self.folder = Path(self.options.get("folder", "slurm-logs")).resolve()
        slurm_parameters(self.options, 1, "effsearch")  # a bad number refused before anything starts
        # Jobs of submitit's local executor run here, and may share a SQLite file.
        self.leaves_machine = self.cluster == "slurm"

    def share(self, n: int) -> Share:
        cpus = int_option(self.options, "cpus_per_worker", 1) or 1
        gpus = int_option(self.options, "gpus_per_worker", 0) or 0
        return Share(cpus=cpus, gpus=gpus, env={"OMP_NUM_THREADS": str(cpus)})

    def executor(self, n: int) -> Any:
        """The submitit executor `start` submits `n` workers through, its parameters set."""
        executor = _submitit().AutoExecutor(folder=self.folder, cluster=self.cluster)
        executor.update_parameters(**slurm_parameters(self.options, n, "effsearch"))
        return executor

    def start(self, n: int, argv: Sequence[str], share: Share) -> list[SlurmWorker]:
        executor = self.executor(n)
        with executor.batch():
            jobs = [executor.submit(run_worker, list(argv), dict(share.env)) for _ in range(n)]
        return [SlurmWorker(f"worker {i} (job {job.job_id})", job) for i, job in enumerate(jobs)]
