"""From a tune's options to its TuneSettings: the policy the command line and the Python API share.

`settings_for` takes the options by the command line's names (`--latency-batch` is `latency_batch`), checks
them against the user file's probe and this machine, and refuses a bad one in one line before anything is made.
"""

from __future__ import annotations

import logging
from pathlib import Path

from effsearch.constraints import Constraints
from effsearch.errors import StudyError
from effsearch.inputs import padded_length
from effsearch.objectives import parse_objectives
from effsearch.space import SearchSpace, load_space
from effsearch.storage import check_writable, resolve_url
from effsearch.study.settings import Hardware, TuneSettings
from effsearch.userfile import Probe, UserFile

__all__ = ["check_folders", "settings_for"]

log = logging.getLogger(__name__)


def check_folders(settings: TuneSettings) -> None:
    """Refuse folders that cannot be written before anything is made: no study, no folder for a bad option."""
    check_writable(settings.artifact_dir, "--artifacts" if settings.artifacts else "the study folder")
    if settings.storage_url.startswith("sqlite:///"):
        check_writable(Path(settings.storage_url.removeprefix("sqlite:///")).parent, "--storage")


def _space(uf: UserFile, path: Path | None, max_world_size: int | None, hardware: Hardware) -> SearchSpace:
    """The search space on this machine, its world sizes capped by --max-world-size and by the hardware."""
    cap = hardware.ranks
    if max_world_size is not None:
        if max_world_size > hardware.ranks:
            log.warning(
                "--max-world-size %d is above what this machine offers (%d %s); using %d",
                max_world_size, hardware.ranks, "GPUs" if hardware.device == "cuda" else "usable cores", hardware.ranks,
            )
        cap = min(hardware.ranks, max_world_size)
    return load_space(path, cap, trained=uf.registration.trained, device=hardware.device).clamp_world_size(cap)


def _check_latency(uf: UserFile, probe: Probe, latency_batch: int, latency_seq_len: int | None) -> None:
    """The timed batch comes from the validation set, and token inputs are timed at no more than its padding."""
    if latency_batch > probe.n_val:
        raise StudyError(
            f"--latency-batch {latency_batch} exceeds the {probe.n_val} samples of {uf.path.name}'s validation set, "
            f"which the timed batch is taken from; pass --latency-batch {probe.n_val} or less"
        )
    if latency_seq_len is not None:
        padded = padded_length(probe.inputs)
        if padded is None:
            raise StudyError(f"--latency-seq-len {latency_seq_len}: {uf.path.name}'s model takes no token input; drop the option")
        if latency_seq_len > padded:
            raise StudyError(
                f"--latency-seq-len {latency_seq_len} exceeds the {padded} positions {uf.path.name}'s validation set is padded to; "
                f"pass --latency-seq-len {padded} or less"
            )


def settings_for(
    uf: UserFile,
    probe: Probe,
    *,
    trials: int,
    study: str | None = None,
    storage: str | None = None,
    seed: int = 0,
    epochs: int | None = None,
    space: Path | None = None,
    objectives: str | None = None,
    max_world_size: int | None = None,
    energy_meter: str | None = None,
    trial_timeout: float | None = None,
    latency_threads: int = 1,
    latency_batch: int = 1,
    latency_seq_len: int | None = None,
    max_latency_ms: float | None = None,
    max_metric_drop: float | None = None,
    max_size_mb: float | None = None,
    artifacts: Path | None = None,
    heartbeat_interval: int = 10,
    heartbeat_grace: int = 30,
    early_stop: bool = True,
    timeout: float | None = None,
) -> TuneSettings:
    """The settings of a tune of `uf`, from the options `effsearch tune` takes; a bad option raises a one-line error.

    The hardware is looked up here, once, and carried in the settings. space: a TOML file of dimension
    overrides; objectives: comma-separated keys (None: the registered metric and the default figures);
    storage: a URL (None: sqlite:///studies/effsearch.db).
    """
    hardware = Hardware.here()
    search = _space(uf, space, max_world_size, hardware)
    _check_latency(uf, probe, latency_batch, latency_seq_len)
    keys, directions = parse_objectives(objectives, uf.metric_key, uf.registration.metric_direction)
    settings = TuneSettings(
        study_name=study or uf.name,
        storage_url=resolve_url(storage),
        trials=trials,
        space=search,
        objectives=keys,
        directions=directions,
        epochs=epochs or uf.registration.epochs,
        seed=seed,
        timeout_s=timeout,
        trial_timeout_s=trial_timeout,
        energy_meter=energy_meter,
        latency_threads=latency_threads,
        latency_batch=latency_batch,
        latency_seq_len=latency_seq_len,
        constraints=Constraints(max_latency_ms, max_metric_drop, max_size_mb),
        artifacts=artifacts.resolve() if artifacts else None,
        heartbeat_interval_s=heartbeat_interval,
        heartbeat_grace_s=heartbeat_grace,
        early_stop=early_stop,
        hardware=hardware,
    )
    check_folders(settings)
    return settings
