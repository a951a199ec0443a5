"""Create a study exactly once (even with many workers starting together), or load and check it."""

from __future__ import annotations

import getpass
import logging
import platform
import socket
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import optuna

from effsearch import record
from effsearch.errors import StudyError
from effsearch.host import cpu_model
from effsearch.inputs import padded_length
from effsearch.measure.artifact import check_inference_objectives, inference_meter
from effsearch.measure.energy import energy_source
from effsearch.plugins import choose_energy_meter, choose_latency_target
from effsearch.sampler import make_sampler
from effsearch.storage import open_storage, redact
from effsearch.study.settings import TuneSettings
from effsearch.train.pool import available_cores
from effsearch.userfile import Probe, UserFile

__all__ = ["Instruments", "environment", "open_study"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Instruments:
    """The energy meter class and latency target a study measures with, chosen once per `tune`."""

    meter_cls: Any
    target: Any

    @classmethod
    def choose(cls, energy_meter: str | None = None) -> Instruments:
        return cls(choose_energy_meter(energy_meter), choose_latency_target()())


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid with no passwd entry (containers run with -u)
        return None


def environment(latency_threads: int) -> dict[str, Any]:
    """Host, CPU, thread settings and library versions, recorded on the study."""
    import torch

    libs = ("effsearch", "torch", "optuna", "onnx", "onnxruntime", "torch-pruning", "fvcore", "numpy")
    return {
        "host": socket.gethostname(),
        "user": _user(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cores_usable": available_cores(),
        "torch_threads": torch.get_num_threads(),
        "latency_threads": latency_threads,
        "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "versions": {name: _version(name) for name in libs},
    }


def _meta(s: TuneSettings, uf: UserFile, probe: Probe, tools: Instruments) -> dict[str, Any]:
    return {
        "user_file": str(uf.path),
        "user_file_sha256": uf.sha256,
        "metric_key": uf.metric_key,
        "metric_direction": uf.registration.metric_direction,
        "objectives": list(s.objectives),
        "space": s.space.to_dict(),
        "epochs": s.epochs,
        "storage": redact(s.storage_url),
        "artifacts": str(s.artifact_dir.resolve()),
        "input_shape": list(probe.input_shape),
        "input_dtype": probe.input_dtype,
        "inputs": probe.inputs,
        "energy_source": energy_source(tools.meter_cls),
        "infer_energy_source": _infer_source(tools),
        "energy_meter": tools.meter_cls.name,
        "energy_basis": tools.meter_cls.describe(),
        "latency_target": tools.target.name,
        "latency": {"threads": s.latency_threads, "batch": s.latency_batch, "sequence_length": s.latency_seq_len or padded_length(probe.inputs), "warmup": 50, "repeats": s.latency_repeats},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment(s.latency_threads),
    }


def _infer_source(tools: Instruments) -> str | None:
    """Where inference energy comes from: its meter can differ from training's (a GPU meter, a CPU target)."""
    meter = inference_meter(tools.meter_cls, tools.target.providers())
    return None if meter is None else energy_source(meter)


def _check_directions(study: optuna.Study, s: TuneSettings) -> None:
    stored = tuple(d.name.lower() for d in study.directions)
    names = tuple(study.metric_names or ())
    if stored != s.directions or (names and names != s.objectives):
        have = ", ".join(f"{n}:{d}" for n, d in zip(names or ("?",) * len(stored), stored))
        want = ", ".join(f"{n}:{d}" for n, d in zip(s.objectives, s.directions))
        raise StudyError(
            f"study {s.study_name!r} was created with objectives {have}, not {want}; "
            "rerun with the same --objectives or choose another --study"
        )


def open_study(s: TuneSettings, *, uf: UserFile, probe: Probe, tools: Instruments, meta_wait_s: float = 30.0) -> optuna.Study:
    """The study named in `s`: created with its metadata and queued baseline if new, else loaded and checked.

    meta_wait_s: how long a worker that lost the race to create the study waits for the winner's metadata.
    """
    # An objective nothing here can measure is refused before the study exists.
    check_inference_objectives(s.objectives, tools.meter_cls, tools.target.providers())
    storage = open_storage(s.storage_url, s.heartbeat_interval_s, s.heartbeat_grace_s)
    sampler = make_sampler(s.seed)
    directions = [optuna.study.StudyDirection[d.upper()] for d in s.directions]
    meta = _meta(s, uf, probe, tools)  # before the study exists: a failure here must not leave a half-made study
    try:
        storage.create_new_study(directions, s.study_name)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        created = False
    except Exception as exc:
        raise StudyError(f"cannot create study {s.study_name!r} in {redact(s.storage_url)}: {exc}") from exc
    study = optuna.load_study(study_name=s.study_name, storage=storage, sampler=sampler)
    if created:
        study.set_metric_names(list(s.objectives))
        # The first run of a new study is the dense fp32 baseline with default training parameters, or for
        # a model that arrives trained, the reference: that model as given.
        study.enqueue_trial(s.space.baseline(), user_attrs=record.baseline_attrs(reference=uf.registration.trained))
        # Written last: other workers wait for it before they start.
        record.write_meta(study, meta)
    else:
        deadline = time.monotonic() + meta_wait_s
        while not record.read_meta(study) and time.monotonic() < deadline:
            time.sleep(0.2)
        recorded = record.read_meta(study)
        if not recorded:
            raise StudyError(
                f"study {s.study_name!r} in {redact(s.storage_url)} was not made by effsearch; choose another --study"
            )
        _check_directions(study, s)
        batch = int(recorded.get("latency", {}).get("batch") or 1)
        if batch != s.latency_batch:
            raise StudyError(
                f"study {s.study_name!r} times latency at batch {batch}, not --latency-batch {s.latency_batch}; "
                f"pass --latency-batch {batch} to resume it, or choose another --study"
            )
        stated = recorded.get("latency", {}).get("sequence_length")
        if s.latency_seq_len is not None and stated is not None and s.latency_seq_len != stated:
            raise StudyError(
                f"study {s.study_name!r} times token inputs at sequence length {stated}, not --latency-seq-len {s.latency_seq_len}; "
                f"pass --latency-seq-len {stated} (or leave it out) to resume it, or choose another --study"
            )
        if recorded.get("user_file_sha256") != uf.sha256:
            log.warning("%s changed since the study was created; trials before and after may differ", uf.path.name)
    if s.constraints:
        record.write_limits(study, s.constraints.to_dict())
    return study
