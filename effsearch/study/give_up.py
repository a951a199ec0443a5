"""When a search value fails for this model whatever the training, later runs stop trying it.

Only a structural failure counts (TrialError.structural, PrecisionResult.structural: the converter or the
runtime refused the graph); a transient one (a full disk, a metric that raised) never gives a value up.
One structural failure proves little (a configuration can break it): a precision is given up once it
failed in runs of two different configurations, pruning once it failed at two ratios. A precision given
up is never a run's own (sampler.py draws another) and no run makes it.
"""

from __future__ import annotations

import logging

import optuna

from effsearch.record import given_up as record_given_up
from effsearch.run.pipeline import PrecisionResult
from effsearch.space import SearchSpace

__all__ = ["GiveUp", "FAILURES_TO_GIVE_UP"]

log = logging.getLogger(__name__)

FAILURES_TO_GIVE_UP = 2


class GiveUp:
    """The values given up so far (a precision, or "prune_ratio" for a model that cannot be pruned).

    Kept on the study with the failures that led there, one attribute each, so that workers and later
    `tune` calls share them and concurrent workers never overwrite each other's.
    """

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def given_up(self) -> dict[str, str]:
        """What was given up so far, each with its reason."""
        return record_given_up.read_given_up(self._study)

    def failed(self, what: str, reason: str, *, where: str, trial: int) -> None:
        """A structural failure of `what` in trial `trial`; where: what it failed with (a configuration, a ratio)."""
        if what in self.given_up():
            return
        record_given_up.add_failure(self._study, what, where=where, trial=trial, reason=reason)
        failures = record_given_up.read_failures(self._study).get(what, [])
        if len(failures) < FAILURES_TO_GIVE_UP:
            log.warning("%s failed (%s); it is tried again with other settings", what, reason)
            return
        trials = " and ".join(str(f["trial"]) for f in failures[:FAILURES_TO_GIVE_UP])
        why = f"failed in trials {trials} with different settings: {failures[-1]['reason']}"
        log.warning("%s %s; later runs will not search it", what, why)
        record_given_up.give_up(self._study, what, why)

    def made(self, results: list[PrecisionResult], *, where: str, trial: int) -> None:
        """Note the structural failures among a run's precisions; where: the run's configuration."""
        for r in results:
            if r.error and r.structural:
                self.failed(r.precision, r.error, where=where, trial=trial)

    def space(self, space: SearchSpace) -> SearchSpace:
        """The space without what was given up that the sampler would otherwise draw (pruning)."""
        if "prune_ratio" in self.given_up():
            return space.fixed("prune_ratio", 0.0)
        return space

    def precisions(self, space: SearchSpace, sampled: str | None) -> tuple[str, ...]:
        """The precisions a run makes: the space's, less those given up, except its own (a queued run's)."""
        given_up = self.given_up()
        return tuple(p for p in space.precisions if p not in given_up or p == sampled)
