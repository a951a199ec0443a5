"""Create a study exactly once (even with many workers starting together), or load and check it."""

from __future__ import annotations

import functools
import getpass
import logging
import os
import platform
import socket
import time
import uuid
from dataclasses import dataclass, replace
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
from effsearch.study.fixed import check_limits, check_setup, check_space
from effsearch.study.settings import TuneSettings
from effsearch.train.pool import available_cores
from effsearch.userfile import Probe, UserFile

__all__ = ["Instruments", "environment", "open_study", "open_worker"]

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


def environment(latency_threads: int) -> record.Environment:
    """Host, CPU, thread settings and library versions, recorded on the study."""
    import torch

    libs = ("effsearch", "torch", "optuna", "onnx", "onnxruntime", "torch-pruning", "fvcore", "numpy")
    return record.Environment(
        host=socket.gethostname(),
        user=_user(),
        platform=platform.platform(),
        python=platform.python_version(),
        cpu=cpu_model(),
        cores_usable=available_cores(),
        torch_threads=torch.get_num_threads(),
        latency_threads=latency_threads,
        cuda_devices=torch.cuda.device_count() if torch.cuda.is_available() else 0,
        versions={name: _version(name) for name in libs},
    )


def _meta(s: TuneSettings, uf: UserFile, probe: Probe, tools: Instruments) -> record.StudyMeta:
    from effsearch.compress.prune.common import channel_multiple

    study_id = uuid.uuid4().hex  # names the artifact folder: studies of one name in two storages never share one
    return record.StudyMeta(
        id=study_id,
        user_file=None if uf.from_python else str(uf.path),  # from Python: no file for `export` to re-import
        user_file_sha256=uf.sha256,
        metric=record.Metric(key=uf.metric_key, direction=uf.registration.metric_direction),
        objectives=tuple(s.objectives),
        space=s.space.to_dict(),
        epochs=s.epochs,
        storage=redact(s.storage_url),
        artifacts=str(replace(s, study_id=study_id).artifact_dir.resolve()),
        seed=s.seed,  # the first worker's; a later one runs with its --seed plus its rank (record.read_workers)
        # Every host of the study rounds pruned channels to the creator's multiple.
        channel_multiple=channel_multiple(),
        input_shape=tuple(probe.input_shape),
        input_dtype=probe.input_dtype,
        inputs=probe.inputs,
        energy=record.Energy(
            source=energy_source(tools.meter_cls), infer_source=_infer_source(tools),
            meter=tools.meter_cls.name, basis=tools.meter_cls.describe(),
        ),
        latency=record.Latency(
            target=tools.target.name, threads=s.latency_threads, batch=s.latency_batch,
            sequence_length=s.latency_seq_len or padded_length(probe.inputs), warmup=50, repeats=s.latency_repeats,
        ),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        environment=environment(s.latency_threads),
    )


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


@functools.cache
def _token(pid: int) -> str:
    """This process's name among a study's workers (by pid: a forked child is a worker of its own)."""
    return uuid.uuid4().hex


def _join(storage: optuna.storages.BaseStorage, s: TuneSettings) -> int:
    """This process's rank among the study's workers: 0 for the first, which keeps `s.seed`."""

    def entry(rank: int) -> dict[str, Any]:
        return {"seed": s.seed + rank, "host": socket.gethostname(), "pid": os.getpid(), "joined": time.time()}

    return record.join_workers(storage, storage.get_study_id_from_name(s.study_name), _token(os.getpid()), entry)


def open_study(s: TuneSettings, *, uf: UserFile, probe: Probe, tools: Instruments, meta_wait_s: float = 30.0) -> optuna.Study:
    """The study named in `s` (see open_worker), for a caller that runs it with open_worker's settings or not at all."""
    return open_worker(s, uf=uf, probe=probe, tools=tools, meta_wait_s=meta_wait_s)[0]


def open_worker(
    s: TuneSettings, *, uf: UserFile, probe: Probe, tools: Instruments, meta_wait_s: float = 30.0
) -> tuple[optuna.Study, TuneSettings]:
    """The study named in `s`, created with its metadata and queued baseline if new, else loaded and checked,
    and the settings this process runs it with: its own seed and the study's artifact folder.

    A resume or another worker whose objectives, set-up, search space or limits differ from the study's
    is refused (StudyError) before anything is asked of Optuna. Each process that opens the study is a
    worker with a rank: the first keeps `s.seed`, the n-th after it runs with `s.seed + n` (its sampler and
    its runs' training), so workers started together do not draw the same configurations; a process that
    opens the study again keeps its rank.
    meta_wait_s: how long a worker that lost the race to create the study waits for the winner's metadata.
    """
    # An objective nothing here can measure is refused before the study exists.
    check_inference_objectives(s.objectives, tools.meter_cls, tools.target.providers())
    storage = open_storage(s.storage_url, s.heartbeat_interval_s, s.heartbeat_grace_s)
    directions = [optuna.study.StudyDirection[d.upper()] for d in s.directions]
    meta = _meta(s, uf, probe, tools)  # before the study exists: a failure here must not leave a half-made study
    try:
        storage.create_new_study(directions, s.study_name)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        created = False
    except Exception as exc:
        raise StudyError(f"cannot create study {s.study_name!r} in {redact(s.storage_url)}: {exc}") from exc
    study = optuna.load_study(study_name=s.study_name, storage=storage)
    if created:
        study.set_metric_names(list(s.objectives))
        # The first run of a new study is the dense fp32 baseline with default training parameters, or for
        # a model that arrives trained, the reference: that model as given.
        study.enqueue_trial(s.space.baseline(), user_attrs=record.baseline_attrs(reference=uf.registration.trained))
        if s.constraints:
            record.write_limits(study, s.constraints.to_dict())
        rank = _join(storage, s)  # before the metadata, which other workers wait for: the creator is the first
        # Written last: other workers wait for it before they start.
        record.write_meta(study, meta)
        recorded = meta
    else:
        deadline = time.monotonic() + meta_wait_s
        while not record.read_meta(study).exists and time.monotonic() < deadline:
            time.sleep(0.2)
        recorded = record.read_meta(study)
        if not recorded.exists:
            raise StudyError(
                f"study {s.study_name!r} in {redact(s.storage_url)} was not made by effsearch; choose another --study"
            )
        _check_directions(study, s)
        if s.latency_seq_len is None:  # not stated: the study's own length is used (the Tuner reads it)
            meta = replace(meta, latency=replace(meta.latency, sequence_length=recorded.latency.sequence_length))
        check_setup(s.study_name, recorded, meta)
        check_space(s.study_name, recorded.space, meta.space, s.hardware.device)
        check_limits(s.study_name, record.read_limits(study), s.constraints.to_dict())
        if recorded.user_file_sha256 != uf.sha256:
            log.warning("%s changed since the study was created; trials before and after may differ", uf.path.name)
        rank = _join(storage, s)
    worker = replace(s, seed=s.seed + rank, study_id=recorded.id)
    if rank:
        log.info("worker %d of study %r: seed %d", rank, s.study_name, worker.seed)
    return optuna.load_study(study_name=s.study_name, storage=storage, sampler=make_sampler(worker.seed)), worker
