"""`--launcher ray`: the workers as Ray tasks, each holding the CPUs and GPUs it runs with, on the cluster
`ray.init(address=...)` reaches, or on a local one started for the launch (or the one already started)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from effsearch.errors import StudyError
from effsearch.launch.base import Share, int_option, parse_options, run_worker

__all__ = ["OPTIONS", "RayLauncher"]

OPTIONS = ("address", "cpus_per_worker", "gpus_per_worker")


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise StudyError("--launcher ray needs ray: pip install 'effsearch[ray]'") from exc
    return ray


@dataclass
class RayWorker:
    name: str
    ref: Any
    log: None = None  # in Ray's own logs, and shown by the launching process

    def poll(self) -> int | None:
        ray = _ray()
        ready, _ = ray.wait([self.ref], timeout=0)
        if not ready:
            return None
        try:
            return int(ray.get(self.ref))
        except Exception:  # the task failed or its node was lost
            return 1

    def cancel(self) -> None:
        _ray().cancel(self.ref, force=True)


class RayLauncher:
    """One task per worker, with `num_cpus` and `num_gpus` of its share."""

    name = "ray"

    def __init__(self, options: Sequence[str] = ()) -> None:
        self.options = parse_options(options, OPTIONS, self.name)
        self.address = self.options.get("address") or None
        # Without an address the cluster is this machine's own.
        self.leaves_machine = self.address is not None

    def share(self, n: int) -> Share:
        cpus = int_option(self.options, "cpus_per_worker", 1) or 1
        gpus = int_option(self.options, "gpus_per_worker", 0) or 0
        return Share(cpus=cpus, gpus=gpus, env={"OMP_NUM_THREADS": str(cpus)})

    def start(self, n: int, argv: Sequence[str], share: Share) -> list[RayWorker]:
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=True)
        task = ray.remote(num_cpus=share.cpus, num_gpus=share.gpus, max_retries=0)(run_worker)
        return [RayWorker(f"worker {i} (ray task)", task.remote(list(argv), dict(share.env))) for i in range(n)]
