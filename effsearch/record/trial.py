"""What effsearch writes on a trial: one frozen record, one writer, one reader.

Every user-attribute key effsearch stores is spelled here and nowhere else; defaults are decided here
once (a failed trial without a reason lost its worker; a trial outside any run belongs to run 0).
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from dataclasses import dataclass, field, fields
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from effsearch.host import process_gone

__all__ = [
    "LOST",
    "TrialRecord",
    "RecordedTrial",
    "write",
    "current",
    "read",
    "read_all",
    "is_training_run",
    "baseline_attrs",
    "lease_until",
    "clear_inherited",
]

# Our code records a reason on every failure it sees; a failed trial without one was failed by
# Optuna's heartbeat check after its worker stopped.
LOST = "worker lost: its process stopped beating (killed, or the machine went down)"
# Reasons after which a run does not count toward the study's total: it is run again.
_NOT_COUNTED = ("interrupted", "worker lost")



@dataclass(frozen=True, kw_only=True)
class TrialRecord:
    """Everything a run writes on an Optuna trial (stored as user attributes under these names).

    lead: the run's own trial (the sampled precision); its other precisions are free points of the same run.
    run, run_trial: the run's number (from 1) and its lead trial's number, shared by all its trials.
    config: the run's TrainConfig as a dict (the batch it really trained with, the seed, the epochs).
    metrics: what was measured on the trial's artifact; onnx: that artifact's absolute path.
    fail_reason, fail_detail: why the trial failed, one line, and a traceback or log for --debug.
    timing, prune_achieved, flops_skipped_ops: the run's phases, achieved prune ratio, ops FLOPs skipped.
    prune_kept: layers pruning left whole, by module name, with the reason and what would let them be pruned.
    prune_round_to: the multiple pruned channel counts were rounded to (compress/prune: channel_multiple).
    worker: the process running the lead trial (host.this_process()), with the trial's number, so that its
    death can be proved from its own machine and container.
    lease: {"trial": number, "until": wall-clock seconds} the worker renews while it runs the trial
    (study/lease.py); once `until` has passed, the worker is lost, whatever machine judges it.
    untrained: the trial's precision measured before training (run.untrained.Untrained as a dict).
    screened: why the configuration was not trained (its untrained figures broke a limit): PRUNED, no run.
    reference: the run measured a model that arrives trained exactly as given (no training); the sampler
    does not learn from it.
    curve: the run's validation after each epoch (on its lead trial): epoch (from 1), metric (the torch
    model's, on the validation set or a fixed part of it), energy_j and train_s spent so far.
    stopped: why the run was stopped early (PRUNED, a training run: it counts toward the total; its curve
    and what it spent are kept, nothing was exported).
    """

    lead: bool | None = None
    baseline: bool | None = None
    run: int | None = None
    run_trial: int | None = None
    config: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    onnx: str | None = None
    fail_reason: str | None = None
    fail_detail: str | None = None
    timing: dict[str, float] | None = None
    prune_achieved: float | None = None
    flops_skipped_ops: dict[str, int] | None = None
    prune_kept: dict[str, str] | None = None
    prune_round_to: int | None = None
    worker: dict[str, Any] | None = None
    lease: dict[str, Any] | None = None
    untrained: dict[str, Any] | None = None
    screened: str | None = None
    reference: bool | None = None
    curve: list[dict[str, Any]] | None = None
    stopped: str | None = None

    def user_attrs(self) -> dict[str, Any]:
        """The fields that are set, as Optuna user attributes."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_user_attrs(cls, attrs: dict[str, Any]) -> TrialRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in attrs.items() if k in names})


_NAMES = frozenset(f.name for f in fields(TrialRecord))


def write(trial: optuna.Trial, **values: Any) -> None:
    """Store some fields of a trial's record as they become known (a run writes in several steps)."""
    unknown = set(values) - _NAMES
    if unknown:
        raise TypeError(f"not a field of TrialRecord: {', '.join(sorted(unknown))}")
    for key, value in TrialRecord(**values).user_attrs().items():
        trial.set_user_attr(key, value)


def current(trial: optuna.Trial) -> TrialRecord:
    """What has been written on a running trial so far."""
    return TrialRecord.from_user_attrs(trial.user_attrs)


def baseline_attrs(reference: bool = False) -> dict[str, Any]:
    """The user attributes of the queued dense baseline; reference: the model as given, untrained here."""
    return TrialRecord(baseline=True, reference=reference or None).user_attrs()


# What a queued trial carries into its run: whether it is the baseline, and of a model as given.
_QUEUED = frozenset({"baseline", "reference"})


def clear_inherited(trial: optuna.Trial) -> None:
    """Blank the record a retried copy inherited from the trial it retries (Optuna's retry callback copies
    every user attribute): the dead worker, its lease, its figures and its reason are not this run's."""
    for key in _NAMES - _QUEUED:
        if trial.user_attrs.get(key) is not None:
            trial.set_user_attr(key, None)


def lease_until(trial_number: int, seconds: float) -> dict[str, Any]:
    """A lease on `trial_number` for `seconds` from now, in wall-clock time (workers share no monotonic clock)."""
    return {"trial": trial_number, "until": time.time() + seconds}


@dataclass(frozen=True)
class RecordedTrial:
    """One trial as effsearch reads it: Optuna's own fields and the record, with the defaults applied."""

    number: int
    state: TrialState
    params: dict[str, Any]
    values: tuple[float, ...] | None
    constraints: tuple[float, ...]
    started: datetime.datetime | None
    record: TrialRecord = field(default_factory=TrialRecord)
    run_number: int | None = None  # the run's number in start order, where the whole study was read
    retry_of: int | None = None  # the trial this one runs again (Optuna's "failed_trial")

    @property
    def lost(self) -> bool:
        """Still RUNNING in the storage, but its worker is gone: its lease ran out, or this machine and
        container can prove its process dead (a record without a lease, from older studies: its process
        alone). What a retried copy inherited from the trial it retries proves nothing about it."""
        if self.state != TrialState.RUNNING:
            return False
        if self._lease_expired_s() is not None:
            return True
        worker = self.record.worker or {}
        # Older records name no trial: theirs unless this trial is a copy that inherited them.
        if worker.get("trial", None if self.retry_of is not None else self.number) != self.number:
            return False
        return process_gone(worker)

    def _lease_expired_s(self) -> float | None:
        """Seconds since this trial's own lease ran out; None while it holds, or where it has none."""
        lease = self.record.lease or {}
        if lease.get("trial") != self.number:
            return None
        past = time.time() - float(lease["until"])
        return past if past > 0 else None

    @property
    def lead(self) -> bool:
        return bool(self.record.lead)

    @property
    def baseline(self) -> bool:
        return bool(self.record.baseline)

    @property
    def reference(self) -> bool:
        return bool(self.record.reference)

    @property
    def run(self) -> int:
        """The run's number: its lead's place in start order (read_all), else what the run wrote, else 0."""
        return int(self.run_number if self.run_number is not None else self.record.run or 0)

    @property
    def run_trial(self) -> int:
        return int(self.number if self.record.run_trial is None else self.record.run_trial)

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.record.metrics or {})

    @property
    def onnx(self) -> str | None:
        return self.record.onnx

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.record.config or {})

    @property
    def curve(self) -> list[dict[str, Any]]:
        return list(self.record.curve or [])

    @property
    def stopped(self) -> bool:
        return self.record.stopped is not None

    @property
    def reason(self) -> str | None:
        """Why the trial failed (LOST where nothing recorded one), None unless it failed or was lost."""
        if self.lost:
            w = self.record.worker or {}
            expired = self._lease_expired_s()
            if expired is not None:
                return f"worker lost: process {w.get('pid')} on {w.get('host')} stopped renewing its lease {expired:.0f} s ago"
            return f"worker lost: process {w.get('pid')} on {w.get('host')} is gone"
        if self.state != TrialState.FAIL:
            return None
        return str(self.record.fail_reason or LOST)

    @property
    def infeasible(self) -> bool:
        """Whether it broke one of the user's limits (a constraint value > 0, Optuna's convention)."""
        return any(c > 0 for c in self.constraints)

    @property
    def is_training_run(self) -> bool:
        """Whether this trial stands for a training run that counts toward the study's total.

        A run's lead trial that trained (finished, stopped early, failed for a reason of its own, or still
        running on another worker); not one whose worker was lost or that was interrupted: that run is run
        again.
        """
        if not self.lead or self.lost:
            return False
        if self.state == TrialState.FAIL:
            return not str(self.reason).startswith(_NOT_COUNTED)
        if self.state == TrialState.PRUNED:
            return self.record.stopped is not None
        return self.state in (TrialState.COMPLETE, TrialState.RUNNING)


def _constraints(t: FrozenTrial) -> tuple[float, ...]:
    # Optuna 5 names each constraint (FrozenTrial.constraints); Optuna 4 kept a list in a system attribute.
    values = t.constraints.values() if hasattr(type(t), "constraints") else (t.system_attrs.get("constraints") or ())
    return tuple(float(c) for c in values)


def read(t: FrozenTrial) -> RecordedTrial:
    """The record of one stored trial."""
    return RecordedTrial(
        number=t.number,
        state=t.state,
        params=dict(t.params),
        values=tuple(t.values) if t.values is not None else None,
        constraints=_constraints(t),
        started=t.datetime_start,
        record=TrialRecord.from_user_attrs(t.user_attrs),
        retry_of=t.system_attrs.get("failed_trial"),
    )


def read_all(study: optuna.Study, states: tuple[TrialState, ...] | None = None) -> list[RecordedTrial]:
    """Every trial of the study (of the given states), in number order, with run numbers.

    Runs are numbered by their lead trial's start, 1 first, over the whole study: unique across workers
    and stable (a lost run keeps its number; the run that replaces it gets the next free one). A run's
    other precisions share its number.
    """
    every = [read(t) for t in study.get_trials(deepcopy=False)]
    # Screened configurations never trained: they are no run and take no number.
    runs = (t for t in every if t.lead and t.started is not None and t.record.screened is None)
    leads = sorted(runs, key=lambda t: (t.started, t.number))
    numbers = {t.number: i + 1 for i, t in enumerate(leads)}
    out = []
    for t in every:
        if states is None or t.state in states:
            run = 0 if t.record.screened is not None else numbers.get(t.run_trial)
            out.append(t if run is None else dataclasses.replace(t, run_number=run))
    return out


def is_training_run(t: FrozenTrial) -> bool:
    """The record's rule (RecordedTrial.is_training_run) on a stored trial."""
    return read(t).is_training_run
