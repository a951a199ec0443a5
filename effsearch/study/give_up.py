"""When a search value fails for this model whatever the training, later runs stop trying it.

One failure proves little (a transient error, or a configuration that breaks it): a precision is given
up once it failed in runs of two different configurations, pruning once it failed at two ratios.
"""

from __future__ import annotations

import logging

import optuna

from effsearch import record
from effsearch.space import SearchSpace

__all__ = ["GiveUp", "FAILURES_TO_GIVE_UP"]

log = logging.getLogger(__name__)

FAILURES_TO_GIVE_UP = 2


class GiveUp:
    """The values given up so far (a precision, or "prune_ratio" for a model that cannot be pruned).

    Kept on the study with the failures that led there, so workers and later `tune` calls share them.
    """

    def __init__(self, study: optuna.Study) -> None:
        self._study = study

    def failed(self, what: str, reason: str, *, where: str, trial: int) -> None:
        """A structural failure of `what` in trial `trial`; where: what it failed with (a configuration, a ratio)."""
        given_up = record.read_given_up(self._study)
        if what in given_up:
            return
        seen = record.read_failures(self._study)
        failures = seen.setdefault(what, [])
        if not any(f["where"] == where for f in failures):
            failures.append({"where": where, "trial": trial, "reason": reason})
            record.write_failures(self._study, seen)
        if len(failures) < FAILURES_TO_GIVE_UP:
            log.warning("%s failed (%s); it is tried again with other settings", what, reason)
            return
        trials = " and ".join(str(f["trial"]) for f in failures[:FAILURES_TO_GIVE_UP])
        why = f"failed in trials {trials} with different settings: {failures[-1]['reason']}"
        log.warning("%s %s; later runs will not search it", what, why)
        given_up[what] = why
        record.write_given_up(self._study, given_up)

    def space(self, space: SearchSpace) -> SearchSpace:
        """The space without what was given up that the sampler would otherwise draw (pruning)."""
        if "prune_ratio" in record.read_given_up(self._study):
            return space.fixed("prune_ratio", 0.0)
        return space

    def precisions(self, space: SearchSpace, sampled: str | None) -> tuple[str, ...]:
        """The precisions a run makes: the space's, less those given up, except the one it sampled."""
        given_up = record.read_given_up(self._study)
        return tuple(p for p in space.precisions if p not in given_up or p == sampled)
