"""A running trial's lease: the worker renews it in the study while it runs, so that any worker can tell a
dead one by the lease it stopped renewing.

Optuna's heartbeat is a table of its RDB storage and does not pass through its gRPC storage proxy; a user
attribute does, on every storage. Host, boot and pid cannot tell dead from alive between containers that
share a host name (host networking) but not their pids. The lease is wall-clock time: workers on different
machines share no other clock, and the grace (seconds) absorbs their skew.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

import optuna

from effsearch import record
from effsearch.host import this_process

__all__ = ["Lease"]

log = logging.getLogger(__name__)


class Lease:
    """Holds a lease on `trial` while the block runs: written on entry, renewed every `interval_s` for
    `grace_s` seconds ahead, by a daemon thread that a dropped connection does not end."""

    def __init__(self, trial: optuna.Trial, *, interval_s: float, grace_s: float) -> None:
        self.trial = trial
        self.interval_s = interval_s
        self.grace_s = max(grace_s, 2 * interval_s)  # a lease outlives one missed renewal
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"effsearch-lease-{trial.number}", daemon=True)

    def __enter__(self) -> Lease:
        if self.trial.storage.get_trial_system_attrs(self.trial._trial_id).get("failed_trial") is not None:
            record.clear_inherited(self.trial)  # a retried copy: the dead worker's record is not this run's
        record.write(
            self.trial, worker={**this_process(), "trial": self.trial.number}, lease=record.lease_until(self.trial.number, self.grace_s)
        )
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def _renew(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                record.write(self.trial, lease=record.lease_until(self.trial.number, self.grace_s))
            except Exception as exc:  # the next renewal reconnects; the grace covers a missed one
                log.warning("missed a lease renewal of trial %d (%s); retrying at the next one", self.trial.number, type(exc).__name__)
