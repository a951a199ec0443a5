"""What one `tune` is asked to do, and what it did."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from effsearch.constraints import Constraints
from effsearch.space import SearchSpace
from effsearch.storage import artifacts_root
from effsearch.train.pool import hardware_world_sizes
from effsearch.train.stopping import FIRST_STOP_EPOCH, STOP_MARGIN

__all__ = ["Hardware", "TuneSettings", "TuneSummary", "artifact_folder"]


def artifact_folder(study_name: str, study_id: str | None) -> str:
    """The name of a study's artifact folder: its name and a short form of the identifier it was made with.

    Two studies of one name (in two SQLite files, say) thus never share a folder; a study made before
    studies had an identifier keeps the folder named after it alone.
    """
    return f"{study_name}-{study_id[:8]}" if study_id else study_name


@dataclass(frozen=True)
class Hardware:
    """What this machine trains on, looked up once per tune and read from the settings after."""

    device: str  # "cuda" or "cpu"
    ranks: int  # the most DDP ranks it offers: its GPUs, or its usable cores

    @classmethod
    def here(cls) -> Hardware:
        device, ranks = hardware_world_sizes()
        return cls(device, ranks)


@dataclass(frozen=True, kw_only=True)
class TuneSettings:
    study_name: str
    storage_url: str
    trials: int
    space: SearchSpace
    objectives: tuple[str, ...]
    directions: tuple[str, ...]
    epochs: int
    seed: int = 0
    timeout_s: float | None = None
    trial_timeout_s: float | None = None
    collective_timeout_s: float = 60.0
    energy_meter: str | None = None
    latency_threads: int = 1
    latency_batch: int = 1  # samples per timed call (--latency-batch)
    latency_seq_len: int | None = None  # token inputs timed at this length (--latency-seq-len); None: the set's
    latency_repeats: int = 300
    artifacts: Path | None = None
    constraints: Constraints = Constraints()
    heartbeat_interval_s: int = 10
    heartbeat_grace_s: int = 30
    screening: bool = True  # off only to measure what screening saves (benchmarks/study_cost.py)
    early_stop: bool = True  # --no-early-stop turns it off (train/stopping.py)
    early_stop_margin: float = STOP_MARGIN
    early_stop_first_epoch: int = FIRST_STOP_EPOCH
    study_id: str | None = None  # the identifier the study was made with (open_study fills it in)
    # settings_for passes the one it looked up; settings built directly look this machine up when made.
    hardware: Hardware = field(default_factory=Hardware.here)

    @property
    def artifact_dir(self) -> Path:
        """The study's folder of run artifacts."""
        return (self.artifacts or artifacts_root(self.storage_url)) / artifact_folder(self.study_name, self.study_id)


@dataclass(frozen=True)
class TuneSummary:
    study: optuna.Study
    runs_done: int
    runs_here: int
    failed_here: int
    completed_here: int
    run_walls: tuple[float, ...] = ()  # wall seconds of each run started here
    pool_starts: dict[str, Any] = field(default_factory=dict)  # rank processes started, and how long it took
