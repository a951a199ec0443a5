"""The run loop: one training run after another until the study's total or the timeout is reached.

Survives a dropped storage connection (finished trials are safe in the storage: reconnect and go on)
and fails, then re-queues, trials whose worker stopped renewing its lease before it counts the runs.
No error loops: runs that fail before they count as training runs end the study after a few in a row.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import optuna
from optuna.trial import TrialState

from effsearch import record
from effsearch.errors import EffsearchError, TrialError

__all__ = ["FAILED_BEFORE_TRAINING_IN_ROW", "LoopStats", "fail_dead_workers", "is_connection_error", "run_loop", "runs_counted"]

log = logging.getLogger(__name__)

_RECONNECTS = 5
# Runs in a row that failed before counting as training runs (they do not use up the total): the error
# would repeat for ever, so the study ends with its reason.
FAILED_BEFORE_TRAINING_IN_ROW = 3

Objective = Callable[[optuna.Trial], list[float]]


@dataclass
class LoopStats:
    """What this worker did: runs started, how many failed or completed, and each run's wall seconds."""

    here: int = 0
    failed: int = 0
    completed: int = 0
    walls: list[float] = field(default_factory=list)


def runs_counted(study: optuna.Study) -> int:
    """Training runs that count toward the total (the record's rule), running ones of other workers included."""
    return sum(t.is_training_run for t in record.read_all(study))


def run_loop(
    study: optuna.Study,
    objective: Objective,
    *,
    trials: int,
    timeout_s: float | None,
    on_start: Callable[[int], None] = lambda done: None,
    after: Callable[[optuna.trial.FrozenTrial], None] = lambda trial: None,
    stop: Callable[[], str | None] = lambda: None,
    until: Callable[[], bool] | None = None,
) -> LoopStats:
    """Call `objective` on one new (or queued) trial at a time until `trials` runs count or time is up.

    on_start(runs_done): told before each run starts. after(trial): told once the run's trial is finished
    (not for a run interrupted or ended by an error that ends the study). stop(): a reason to end the
    study (raised as an EffsearchError, exit 1), checked after each trial. until(): True ends the loop
    early, as reaching the total does (a benchmark that runs until a goal is met).
    """
    stats = LoopStats()
    failed_before_training: list[record.RecordedTrial] = []
    start = time.monotonic()
    lost_connections = 0
    adopt = False
    numbers: list[int] = []

    def tracked(trial: optuna.Trial) -> list[float]:
        numbers.append(trial.number)  # the run's trial may be older than this call (a queued one)
        return objective(trial)

    while True:
        numbers.clear()
        try:
            if adopt:
                _adopt_orphans(study)
                adopt = False
            # A worker that died leaves its trial RUNNING: fail it (and queue it again) before counting,
            # at once where this host can prove the process gone, else once its lease (or Optuna's
            # heartbeat, on an RDB storage) is stale.
            fail_dead_workers(study)
            optuna.storages.fail_stale_trials(study)
            done = runs_counted(study)
            if done >= trials or (until is not None and until()):
                break
            reason = stop()
            if reason:
                raise EffsearchError(reason)
            if timeout_s is not None and time.monotonic() - start >= timeout_s:
                log.info("timeout of %g s reached; stopping before run %d", timeout_s, done + 1)
                break
            on_start(done)
            t0 = time.perf_counter()
            study.optimize(
                tracked, n_trials=1, catch=(TrialError,), gc_after_trial=False, callbacks=[lambda study, trial: after(trial)]
            )
            stats.walls.append(time.perf_counter() - t0)
            stats.here += 1
            lost_connections = 0
            mine = [record.read(t) for t in study.get_trials(deepcopy=False) if t.number in numbers]
        except Exception as exc:
            if not is_connection_error(exc) or lost_connections >= _RECONNECTS:
                raise
            lost_connections += 1
            adopt = True
            log.warning("storage connection lost (%s); reconnecting (%d/%d)", type(exc).__name__, lost_connections, _RECONNECTS)
            time.sleep(min(2.0**lost_connections, 10.0))
            continue
        for t in mine:
            if t.state == TrialState.FAIL:
                stats.failed += 1
                log.warning("run %s failed: %s", t.run, t.reason)
            elif t.state == TrialState.COMPLETE:
                stats.completed += 1
            if t.state == TrialState.FAIL and not t.is_training_run:
                failed_before_training.append(t)
            else:
                failed_before_training.clear()
        if len(failed_before_training) >= FAILED_BEFORE_TRAINING_IN_ROW:
            last = failed_before_training[-1]
            raise EffsearchError(
                f"{len(failed_before_training)} runs in a row failed before training (trials "
                f"{', '.join(str(t.number) for t in failed_before_training)}), the last with: "
                f"{(str(last.reason).strip().splitlines() or [''])[0]}; "
                "fix that error and run tune again"
            )
    return stats


def fail_dead_workers(study: optuna.Study, max_retry: int = 1) -> list[int]:
    """Fail the RUNNING trials whose worker is gone, and queue each run again once.

    A worker is gone once its lease ran out (study/lease.py), on any storage and whoever judges; at once
    where this machine and container can prove its process dead (a driver killed with SIGKILL here is
    seen by the next `tune`). The copy queued again carries the baseline's marks, never the dead worker's
    record (its worker, lease, figures or reason). Returns the failed numbers.
    """
    failed = []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial = record.read(frozen)
        if not trial.lost:
            continue
        record.write(optuna.Trial(study, frozen._trial_id), fail_reason=str(trial.reason))
        try:
            if not study._storage.set_trial_state_values(frozen._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker failed it first
        failed.append(frozen.number)
        history = [*frozen.system_attrs.get("retry_history", []), frozen.number]
        if len(history) > max_retry:
            continue
        log.warning("run of trial %d lost its worker (%s); queued again", frozen.number, trial.reason)
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=frozen.params,
                distributions=frozen.distributions,
                user_attrs=record.baseline_attrs(reference=trial.reference) if trial.baseline else {},
                system_attrs={"failed_trial": frozen.number, **frozen.system_attrs, "retry_history": history},
            )
        )
    return failed


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


def is_connection_error(exc: BaseException) -> bool:
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
