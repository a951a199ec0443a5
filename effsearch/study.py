"""Create or resume the Optuna study, and run training runs until the study's total is reached."""

from __future__ import annotations

import getpass
import logging
import math
import os
import platform
import shutil
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from effsearch.constraints import Constraints
from effsearch.errors import StudyError, TrialError
from effsearch.host import cpu_model
from effsearch.measure.energy import energy_source
from effsearch.pipeline import Measurer, RunResult, run_training
from effsearch.plugins import choose_energy_meter, choose_latency_target
from effsearch.space import CORE_PARAMS, SearchSpace, TrainConfig
from effsearch.storage import artifacts_root, open_storage, redact
from effsearch.train.pool import WorkerPool, available_cores, hardware_world_sizes
from effsearch.userfile import Probe, UserFile

__all__ = ["TuneSettings", "TuneSummary", "Tuner", "environment", "runs_counted"]

log = logging.getLogger(__name__)

# Heartbeats and metric names are stable enough for us; Optuna marks them experimental.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

# Reasons after which a run does not count toward the study's total: it is run again.
_NOT_COUNTED = ("interrupted", "worker lost")


@dataclass(frozen=True)
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
    latency_repeats: int = 300
    artifacts: Path | None = None
    constraints: Constraints = Constraints()
    heartbeat_interval_s: int = 10
    heartbeat_grace_s: int = 30


@dataclass(frozen=True)
class TuneSummary:
    study: optuna.Study
    runs_done: int
    runs_here: int
    failed_here: int
    completed_here: int


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


def _leads(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("lead")]


def runs_counted(study: optuna.Study) -> int:
    """Training runs that count toward the total: finished ones, and running ones (other workers)."""
    n = 0
    for t in _leads(study):
        # A failed trial with no reason was failed by a heartbeat check: its worker was lost.
        reason = t.user_attrs.get("fail_reason", "worker lost")
        if t.state == TrialState.FAIL and str(reason).startswith(_NOT_COUNTED):
            continue
        if t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING):
            n += 1
    return n


def _check_directions(study: optuna.Study, settings: TuneSettings) -> None:
    stored = tuple(d.name.lower() for d in study.directions)
    names = tuple(study.metric_names or ())
    if stored != settings.directions or (names and names != settings.objectives):
        have = ", ".join(f"{n}:{d}" for n, d in zip(names or ("?",) * len(stored), stored))
        want = ", ".join(f"{n}:{d}" for n, d in zip(settings.objectives, settings.directions))
        raise StudyError(
            f"study {settings.study_name!r} was created with objectives {have}, not {want}; "
            "rerun with the same --objectives or choose another --study"
        )


class Tuner:
    """Runs the study: one Optuna trial per training run, plus one trial per extra precision."""

    def __init__(self, uf: UserFile, probe: Probe, settings: TuneSettings, on_stage: Callable[[int, str, int], None] | None = None) -> None:
        self.uf = uf
        self.probe = probe
        self.s = settings
        self.on_stage = on_stage or (lambda run, stage, front: None)
        self.storage = open_storage(settings.storage_url, settings.heartbeat_interval_s, settings.heartbeat_grace_s)
        self.artifacts = (settings.artifacts or artifacts_root(settings.storage_url)) / settings.study_name
        self.device, self.hw_ranks = hardware_world_sizes()
        self.meter_cls = choose_energy_meter(settings.energy_meter)
        self.target = choose_latency_target()()
        self._baseline: float | None = None
        self.study = self._open_study()
        self._structural: dict[str, str] = dict(self.study.user_attrs.get("structural_failures", {}))
        self.space = self._narrowed(settings.space)

    def _meta(self) -> dict[str, Any]:
        s = self.s
        return {
            "user_file": str(self.uf.path),
            "user_file_sha256": self.uf.sha256,
            "metric_key": self.uf.metric_key,
            "metric_direction": self.uf.registration.metric_direction,
            "objectives": list(s.objectives),
            "space": s.space.to_dict(),
            "epochs": s.epochs,
            "storage": redact(s.storage_url),
            "artifacts": str(self.artifacts.resolve()),
            "input_shape": list(self.probe.input_shape),
            "input_dtype": self.probe.input_dtype,
            "energy_source": energy_source(self.meter_cls),
            "energy_meter": self.meter_cls.name,
            "energy_basis": self.meter_cls.describe(),
            "latency_target": self.target.name,
            "latency": {"threads": s.latency_threads, "batch": 1, "warmup": 50, "repeats": s.latency_repeats},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "environment": environment(s.latency_threads),
        }

    def _open_study(self) -> optuna.Study:
        """Create the study exactly once, even when several workers start together; else load it."""
        s = self.s
        sampler = optuna.samplers.TPESampler(seed=s.seed, multivariate=True, n_startup_trials=8)
        directions = [optuna.study.StudyDirection[d.upper()] for d in s.directions]
        meta = self._meta()  # before the study exists: a failure here must not leave a half-made study
        try:
            self.storage.create_new_study(directions, s.study_name)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            created = False
        except Exception as exc:
            raise StudyError(f"cannot create study {s.study_name!r} in {redact(s.storage_url)}: {exc}") from exc
        study = optuna.load_study(study_name=s.study_name, storage=self.storage, sampler=sampler)
        if created:
            study.set_metric_names(list(s.objectives))
            # The first run of a new study is the dense fp32 baseline with default training parameters.
            study.enqueue_trial(s.space.baseline(), user_attrs={"baseline": True})
            # Written last: other workers wait for it before they start.
            study.set_user_attr("effsearch", meta)
        else:
            deadline = time.monotonic() + 30
            while "effsearch" not in study.user_attrs and time.monotonic() < deadline:
                time.sleep(0.2)
            if "effsearch" not in study.user_attrs:
                raise StudyError(
                    f"study {s.study_name!r} in {redact(s.storage_url)} was not made by effsearch; choose another --study"
                )
            _check_directions(study, s)
            recorded = study.user_attrs["effsearch"]
            if recorded.get("user_file_sha256") != self.uf.sha256:
                log.warning("%s changed since the study was created; trials before and after may differ", self.uf.path.name)
        if s.constraints:
            study.set_user_attr("constraints", s.constraints.to_dict())
        return study

    def _narrowed(self, space: SearchSpace) -> SearchSpace:
        """The space without values that failed structurally for this model (a model that cannot be pruned)."""
        if "prune_ratio" in self._structural:
            return space.fixed("prune_ratio", 0.0)
        return space

    def _baseline_metric(self) -> float | None:
        if self._baseline is None:
            for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                if t.user_attrs.get("baseline"):
                    self._baseline = float(t.user_attrs["metrics"][self.uf.metric_key])
        return self._baseline

    def _set_constraints(self, trial: optuna.Trial, metrics: dict[str, Any]) -> None:
        """Record how far the trial is from each of the user's limits (<= 0: met); samplers and the front use it."""
        if not self.s.constraints:
            return
        values = self.s.constraints.violations(
            metrics, self.uf.metric_key, self._baseline_metric(), self.uf.registration.metric_direction
        )
        for key, value in zip(self.s.constraints.to_dict(), values):
            trial.set_constraint(key, value)

    # -- one training run -------------------------------------------------------------------

    def _config(self, params: dict[str, Any]) -> TrainConfig:
        world = int(params["world_size"])
        batch = int(params["batch_size"])
        batch = max(world, (batch // world) * world)  # global batch, a multiple of the world size
        return TrainConfig(
            batch_size=batch,
            lr=float(params["lr"]),
            lr_schedule=str(params["lr_schedule"]),
            clip_norm=float(params["clip_norm"]),
            prune_ratio=float(params["prune_ratio"]),
            world_size=world,
            epochs=self.s.epochs,
            seed=self.s.seed,
            optimizer=str(params["optimizer"]),
            warmup_frac=float(params["warmup_frac"]),
            prune_importance=str(params["prune_importance"]),
            prune_when=str(params["prune_when"]),
        )

    def _values(self, metrics: dict[str, Any]) -> list[float]:
        try:
            values = [float(metrics[k]) for k in self.s.objectives]
        except KeyError as exc:
            raise TrialError(f"objective {exc.args[0]!r} was not measured") from exc
        for key, value in zip(self.s.objectives, values):
            if not math.isfinite(value):
                raise TrialError(f"objective {key!r} is {value}, not a finite number; check the metric function")
        return values

    def _trial_dir(self, number: int) -> Path:
        return self.artifacts / f"trial-{number}"

    def _record_sibling(self, lead: optuna.Trial, params: dict[str, Any], result, run: int) -> None:
        """Record one extra precision of the lead's trained model as its own trial."""
        storage = self.study._storage
        trial_id = storage.create_new_trial(self.study._study_id)
        trial = optuna.Trial(self.study, trial_id)
        dists = self.space.distributions()
        for name in dists:
            value = result.precision if name == "precision" else params[name]
            storage.set_trial_param(trial_id, name, dists[name].to_internal_repr(value), dists[name])
        attrs = {"run": run, "run_trial": lead.number, "lead": False, "config": asdict(self._config(params))}
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        if result.error:
            trial.set_user_attr("fail_reason", result.error)
            self.study.tell(trial, state=TrialState.FAIL)
            return
        try:
            values = self._finish(trial, result)
        except TrialError as exc:
            trial.set_user_attr("fail_reason", str(exc))
            self.study.tell(trial, state=TrialState.FAIL)
            return
        self.study.tell(trial, values)

    def _finish(self, trial: optuna.Trial, result) -> list[float]:
        """Move the precision's artifact into the trial's folder, store the metrics, tell the values."""
        dst_dir = self._trial_dir(trial.number)
        dst_dir.mkdir(parents=True, exist_ok=True)
        dst = dst_dir / "model.onnx"
        if result.onnx.resolve() != dst.resolve():
            shutil.copyfile(result.onnx, dst)
        metrics = {**result.metrics, "size_bytes": dst.stat().st_size}
        trial.set_user_attr("metrics", metrics)
        trial.set_user_attr("onnx", str(dst.resolve()))
        self._set_constraints(trial, metrics)
        return self._values(metrics)

    def _objective(self, trial: optuna.Trial) -> list[float]:
        """One training run; every failure it sees is recorded with its reason (a trial without one was lost)."""
        try:
            return self._run(trial)
        except TrialError as exc:
            if "fail_reason" not in trial.user_attrs:
                trial.set_user_attr("fail_reason", str(exc))
            raise

    def _run(self, trial: optuna.Trial) -> list[float]:
        self._lead_number = trial.number
        params = self.space.suggest(trial)
        trial.set_user_attr("lead", True)
        run = runs_counted(self.study)  # this run included: runs count from 1
        trial.set_user_attr("run", run)
        trial.set_user_attr("run_trial", trial.number)
        config = self._config(params)
        trial.set_user_attr("config", asdict(config))
        self.on_stage(run, "starting", self.front_size())
        try:
            result = self._train(trial, config)
        except TrialError as exc:
            trial.set_user_attr("fail_reason", str(exc))
            if exc.detail:
                trial.set_user_attr("fail_detail", exc.detail[-4000:])
            if exc.structural and exc.structural not in self._structural:
                log.warning("%s fails for this model whatever the training; later runs will not search it", exc.structural)
                self._structural[exc.structural] = str(exc)
                self.study.set_user_attr("structural_failures", self._structural)
                self.space = self._narrowed(self.space)
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted")
            if trial.user_attrs.get("baseline"):
                # Every study starts from its baseline: queue it again for the next `tune`.
                self.study.enqueue_trial(self.space.baseline(), user_attrs={"baseline": True})
            raise
        trial.set_user_attr("timing", result.timing)
        trial.set_user_attr("prune_achieved", result.lead.prune.achieved if result.lead.prune else 0.0)
        trial.set_user_attr("flops_skipped_ops", result.lead.flops.skipped_ops if result.lead.flops else {})
        if trial.user_attrs.get("baseline"):
            # Metric drops are measured from the baseline run's fp32 model, siblings included.
            fp32 = next((pr for pr in result.precisions if pr.precision == "fp32" and not pr.error), None)
            if fp32 is not None:
                self._baseline = float(fp32.metrics[self.uf.metric_key])
        lead_result = None
        for pr in result.precisions:
            if pr.error and pr.structural and pr.precision not in self._structural:
                self._structural[pr.precision] = pr.error
                self.study.set_user_attr("structural_failures", self._structural)
            if pr.precision == params["precision"]:
                lead_result = pr
            else:
                self._record_sibling(trial, params, pr, run)
        self.on_stage(run, "recorded", self.front_size())
        if lead_result is None or lead_result.error:
            reason = lead_result.error if lead_result else f"precision {params['precision']} was not made"
            trial.set_user_attr("fail_reason", reason)
            raise TrialError(reason)
        return self._finish(trial, lead_result)

    def _train(self, trial: optuna.Trial, config: TrainConfig) -> RunResult:
        cores = available_cores()
        threads = max(1, cores // config.world_size) if self.device == "cpu" else 1
        # A precision that failed for structural reasons is not tried again, except where sampled.
        precisions = tuple(
            p for p in self.space.precisions if p not in self._structural or p == trial.params.get("precision")
        )
        return run_training(
            self.pool,
            self.measurer,
            config,
            precisions,
            self._trial_dir(trial.number),
            device=self.device,
            threads_per_rank=threads,
            collective_timeout_s=self.s.collective_timeout_s,
            timeout_s=self.s.trial_timeout_s,
            stage=lambda st: self.on_stage(trial.user_attrs.get("run", 0), st, -1),
        )

    def front_size(self) -> int:
        try:
            return len(self.study.best_trials)
        except Exception:
            return 0

    # -- the loop -----------------------------------------------------------------------------

    def run(self, datasets: tuple[Any, Any]) -> TuneSummary:
        s = self.s
        self.measurer = Measurer(
            self.uf, datasets, self.meter_cls, self.target.providers(), s.latency_threads, repeats=s.latency_repeats
        )
        start = time.monotonic()
        here = failed = completed = 0
        self.run_walls: list[float] = []
        lost_connections = 0
        adopt = False
        with WorkerPool(self.uf.path, collective_timeout_s=s.collective_timeout_s) as pool:
            self.pool = pool
            while True:
                try:
                    if adopt:
                        _adopt_orphans(self.study)
                        adopt = False
                    # A worker that died leaves its trial RUNNING: fail it (and queue it again) before counting.
                    optuna.storages.fail_stale_trials(self.study)
                    done = runs_counted(self.study)
                    if done >= s.trials:
                        break
                    if s.timeout_s is not None and time.monotonic() - start >= s.timeout_s:
                        log.info("timeout of %g s reached; stopping before run %d", s.timeout_s, done + 1)
                        break
                    self.on_stage(done, "starting", self.front_size())
                    # The run's trial may be older than this call (the enqueued baseline, a re-queued one).
                    self._lead_number = None
                    t0 = time.perf_counter()
                    self.study.optimize(self._objective, n_trials=1, catch=(TrialError,), gc_after_trial=False)
                    self.run_walls.append(time.perf_counter() - t0)
                    here += 1
                    lost_connections = 0
                    trials = self.study.get_trials(deepcopy=False)  # in the try: the storage may drop us here too
                except Exception as exc:
                    if not _is_connection_error(exc) or lost_connections >= 5:
                        raise
                    # The storage dropped us: finished trials are safe in it; reconnect and go on.
                    lost_connections += 1
                    adopt = True
                    log.warning("storage connection lost (%s); reconnecting (%d/5)", type(exc).__name__, lost_connections)
                    time.sleep(min(2.0**lost_connections, 10.0))
                    continue
                mine = [t for t in trials if t.number == self._lead_number]
                for t in mine:
                    if t.state == TrialState.FAIL:
                        failed += 1
                        log.warning("run %s failed: %s", t.user_attrs.get("run"), t.user_attrs.get("fail_reason", "?"))
                    elif t.state == TrialState.COMPLETE:
                        completed += 1
            self.pool_stats = {"starts": pool.starts, "start_s": [round(x, 3) for x in pool.start_seconds]}
        return TuneSummary(self.study, runs_counted(self.study), here, failed, completed)


def _adopt_orphans(study: optuna.Study) -> None:
    """Give every RUNNING trial one heartbeat, so that a trial orphaned by a dropped connection goes stale.

    A connection dropped inside optuna's ask() leaves the new trial RUNNING before its heartbeat thread
    starts, and optuna's stale check only sees trials that have beaten once. Trials of live workers beat
    on by themselves; the orphan's one beat ages past the grace period, and it is failed and queued again.
    """
    storage = study._storage
    if getattr(storage, "get_heartbeat_interval", lambda: None)() is None:
        return
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.record_heartbeat(t._trial_id)


def _is_connection_error(exc: BaseException) -> bool:
    """A dropped or refused database connection (SQLAlchemy's OperationalError, possibly wrapped)."""
    try:
        from sqlalchemy.exc import DBAPIError
    except ImportError:
        return False
    while exc is not None:
        if isinstance(exc, DBAPIError) and (exc.connection_invalidated or "connection" in str(exc).lower()):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
