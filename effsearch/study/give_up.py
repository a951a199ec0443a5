"""When a search value fails for this model whatever the training, later runs stop trying it."""

from __future__ import annotations

import logging

import optuna

from effsearch import record
from effsearch.space import SearchSpace

__all__ = ["GiveUp"]

log = logging.getLogger(__name__)


class GiveUp:
    """The values given up so far (a precision, or "prune_ratio" for a model that cannot be pruned).

    Kept on the study, so workers and later `tune` calls share them.
    """

    def __init__(self, study: optuna.Study) -> None:
        self._study = study
        self._given_up = record.read_given_up(study)

    def failed(self, what: str, reason: str) -> None:
        """A structural failure of `what`: give it up, unless it is already."""
        if what in self._given_up:
            return
        log.warning("%s fails for this model whatever the training; later runs will not search it", what)
        self._given_up[what] = reason
        record.write_given_up(self._study, self._given_up)

    def space(self, space: SearchSpace) -> SearchSpace:
        """The space without what was given up that the sampler would otherwise draw (pruning)."""
        if "prune_ratio" in self._given_up:
            return space.fixed("prune_ratio", 0.0)
        return space

    def precisions(self, space: SearchSpace, sampled: str | None) -> tuple[str, ...]:
        """The precisions a run makes: the space's, less those given up, except the one it sampled."""
        return tuple(p for p in space.precisions if p not in self._given_up or p == sampled)
