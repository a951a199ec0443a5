"""A worker's side of a preemption: SIGTERM or SIGUSR2 stop it as Ctrl-C does, and its run is queued again at once.

The scheduler signals before it preempts a job (SLURM: SIGUSR2 `signal_delay_s` ahead, then SIGTERM); the
worker fails its running trial as "interrupted" (study/tuner.py) and, here, queues that run again with the
same parameters, so another worker takes it up without waiting for the lease to run out.
"""

from __future__ import annotations

import logging
import os
import signal
from types import FrameType, TracebackType

import optuna
from optuna.trial import TrialState

from effsearch import record
from effsearch.launch.base import PREEMPT_SIGNALS

__all__ = ["Preemption", "requeue_interrupted"]

log = logging.getLogger(__name__)


class Preemption:
    """While the block runs, the first SIGTERM or SIGUSR2 raises KeyboardInterrupt in the main thread; a
    second one is ignored, so that the run's failure is recorded whole. `signal` names the one received."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._before: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is None:
            self.signal = signum
            raise KeyboardInterrupt(signal.Signals(signum).name)

    def __enter__(self) -> Preemption:
        try:
            self._before = {sig: signal.signal(sig, self._handle) for sig in PREEMPT_SIGNALS}
        except ValueError:  # not the main thread: the default (exit) stays, and the lease finds the run
            self._before = {}
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for sig, handler in self._before.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]


def requeue_interrupted(study: optuna.Study, pid: int | None = None) -> list[int]:
    """Queue again, once, each run of this process (`pid`) failed as "interrupted"; the numbers queued.

    A baseline is queued again by the worker itself (study/tuner.py); a retried copy carries none of the
    interrupted run's record, as a lost worker's does not (study/loop.py fail_dead_workers).
    """
    pid = os.getpid() if pid is None else pid
    frozen = study.get_trials(deepcopy=False)
    retried = {t.system_attrs.get("failed_trial") for t in frozen}
    queued = []
    for t in frozen:
        own = record.read(t)
        worker = own.record.worker or {}
        if (
            t.state != TrialState.FAIL or own.record.fail_reason != "interrupted" or not own.lead or own.record.baseline
            or worker.get("pid") != pid or t.number in retried
        ):
            continue
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING, params=t.params, distributions=t.distributions,
                system_attrs={"failed_trial": t.number, "retry_history": [*t.system_attrs.get("retry_history", []), t.number]},
            )
        )
        queued.append(t.number)
        log.debug("run of trial %d interrupted by a signal; queued again", t.number)
    return queued
