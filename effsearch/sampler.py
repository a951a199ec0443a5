"""The sampler a study uses: random for its first training runs, then a model-based sampler.

A training run records one trial per precision, and a screened configuration one PRUNED trial per
precision, so Optuna's own startup counts (trials) end the random phase after a run or two. Here the
random phase lasts STARTUP_RUNS training runs by the record's rule (`record.is_training_run`), however
many trials each run or screened configuration records. The default was chosen by replaying candidates
on a tabulated benchmark (benchmarks/tabular/, figures in the README's "The search space").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from effsearch import record

__all__ = ["STARTUP_RUNS", "TrainingRunStartup", "make_sampler", "training_runs"]

# Random training runs before the model takes over (the dense baseline, queued, is the first of them).
STARTUP_RUNS = 8


def training_runs(study: Study) -> int:
    """Trials of the study that stand for a training run (the record's rule), the running one left out."""
    return sum(record.is_training_run(t) for t in study.get_trials(deepcopy=False))


class _WithoutReference:
    """The study as the model sees it: without the trials of a reference run (a model measured as given,
    whose training parameters mean nothing), everything else delegated to the study itself."""

    def __init__(self, study: Study) -> None:
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    @staticmethod
    def _kept(trials: list[FrozenTrial]) -> list[FrozenTrial]:
        return [t for t in trials if not record.read(t).reference]

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return self._kept(self._study.get_trials(deepcopy=deepcopy, states=states))

    def _get_trials(self, deepcopy: bool = True, states: Any = None, use_cache: bool = False) -> list[FrozenTrial]:
        return self._kept(self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache))

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class TrainingRunStartup(BaseSampler):
    """Samples at random until `startup_runs` training runs exist, then hands every trial to `model`.

    The phase is decided once per trial, in before_trial, so that a trial's relative and independent
    parameters come from the same sampler even if another worker finishes a run meanwhile.
    """

    def __init__(self, model: BaseSampler, *, startup_runs: int, seed: int | None = None) -> None:
        self.model = model
        self.startup_runs = startup_runs
        self._random = RandomSampler(seed=seed)
        self._random_phase: dict[int, bool] = {}  # trial number -> sampled at random

    def __repr__(self) -> str:
        return f"TrainingRunStartup({type(self.model).__name__}, startup_runs={self.startup_runs})"

    def reseed_rng(self) -> None:
        self._random.reseed_rng()
        self.model.reseed_rng()

    def random_phase(self, study: Study, trial: FrozenTrial) -> bool:
        """Whether `trial` is (or would be) sampled at random."""
        if trial.number not in self._random_phase:
            self._random_phase[trial.number] = training_runs(study) < self.startup_runs
        return self._random_phase[trial.number]

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.random_phase(study, trial)
        self.model.before_trial(_WithoutReference(study), trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        if self.random_phase(study, trial):
            return {}
        return self.model.infer_relative_search_space(_WithoutReference(study), trial)

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if self.random_phase(study, trial) or not search_space:
            return {}
        return self.model.sample_relative(_WithoutReference(study), trial, search_space)

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        if self.random_phase(study, trial):
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        return self.model.sample_independent(_WithoutReference(study), trial, param_name, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self._random_phase.pop(trial.number, None)
        self.model.after_trial(_WithoutReference(study), trial, state, values)


def make_sampler(seed: int) -> BaseSampler:
    """The sampler a study uses: STARTUP_RUNS random training runs, then multi-objective TPE.

    TPE models every recorded trial: the free precision trials of each run, and screened configurations
    (PRUNED, their limit values > 0), which it ranks last.
    """
    tpe = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=0)
    return TrainingRunStartup(tpe, startup_runs=STARTUP_RUNS, seed=seed)
