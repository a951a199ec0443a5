"""The sampler a study uses: random for its first training runs, then Optuna's GP, TPE after a screened one.

A training run records one trial per precision, and a screened configuration one PRUNED trial per
precision, so Optuna's own startup counts (trials) end the random phase after a run or two. Here the
random phase lasts STARTUP_RUNS training runs by the record's rule (`record.is_training_run`), however
many trials each run or screened configuration records. The default was chosen by replaying candidates
on a tabulated benchmark (benchmarks/tabular/, figures in docs/command-line.md, "The search space").

A precision the study gave up (study/give_up.py) is never proposed: a draw of it becomes another of the
choices. The precision's distribution stays as the study began, so that the study resumes and its
trials stay comparable (Optuna refuses a categorical parameter whose choices change).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from effsearch import record
from effsearch.errors import StudyError
from effsearch.record.given_up import read_given_up

__all__ = ["STARTUP_RUNS", "TPEAfterScreened", "TrainingRunStartup", "make_sampler", "training_runs"]

# Random training runs before the model takes over (the dense baseline, queued, is the first of them):
# 4 beat 8 on the tabulated benchmark (docs/command-line.md, "The search space").
STARTUP_RUNS = 4


def training_runs(study: Study) -> int:
    """Trials of the study that stand for a training run (the record's rule), the running one left out."""
    return sum(record.is_training_run(t) for t in study.get_trials(deepcopy=False))


class _WithoutReference:
    """The study as a model sees it: without the trials of a reference run (a model measured as given,
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


def _view(study: Study) -> Any:
    return study if isinstance(study, _WithoutReference) else _WithoutReference(study)


# The parameter a study can give values of up, and the one it draws instead.
_GIVEN_UP_PARAM = "precision"


def _searched_instead(study: Study, trial: FrozenTrial, name: str, value: Any, distribution: BaseDistribution) -> Any:
    """`value`, unless the study gave it up: then one of the choices it did not give up (spread over them
    by trial number, so that a sampler set on it does not pin every later run to one precision)."""
    if name != _GIVEN_UP_PARAM or not isinstance(distribution, CategoricalDistribution):
        return value
    given_up = read_given_up(study)
    if value not in given_up:
        return value
    kept = [c for c in distribution.choices if c not in given_up]
    return kept[trial.number % len(kept)] if kept else value


class _PerTrial(BaseSampler):
    """Hands each trial, whole, to the sampler `choose` names for it (decided once, in before_trial); the
    samplers see the study without its reference trials."""

    def __init__(self) -> None:
        self._chosen: dict[int, BaseSampler] = {}  # trial number -> its sampler

    def choose(self, study: Study, trial: FrozenTrial) -> BaseSampler:
        raise NotImplementedError

    def samplers(self) -> tuple[BaseSampler, ...]:
        raise NotImplementedError

    def sampler_of(self, study: Study, trial: FrozenTrial) -> BaseSampler:
        """The sampler of `trial`: once chosen, its relative and independent parameters come from it alone,
        even if another worker finishes a run meanwhile."""
        if trial.number not in self._chosen:
            self._chosen[trial.number] = self.choose(study, trial)
        return self._chosen[trial.number]

    def reseed_rng(self) -> None:
        for s in self.samplers():
            s.reseed_rng()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.sampler_of(study, trial).before_trial(_view(study), trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.sampler_of(study, trial).infer_relative_search_space(_view(study), trial)

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        params = self.sampler_of(study, trial).sample_relative(_view(study), trial, search_space)
        return {k: _searched_instead(study, trial, k, v, search_space[k]) for k, v in params.items()}

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution) -> Any:
        value = self.sampler_of(study, trial).sample_independent(_view(study), trial, param_name, param_distribution)
        return _searched_instead(study, trial, param_name, value, param_distribution)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        self.sampler_of(study, trial).after_trial(_view(study), trial, state, values)
        self._chosen.pop(trial.number, None)


class TrainingRunStartup(_PerTrial):
    """Samples at random until `startup_runs` training runs exist, then hands every trial to `model`."""

    def __init__(self, model: BaseSampler, *, startup_runs: int, seed: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.startup_runs = startup_runs
        self._random = RandomSampler(seed=seed)

    def __repr__(self) -> str:
        return f"TrainingRunStartup({self.model!r}, startup_runs={self.startup_runs})"

    def samplers(self) -> tuple[BaseSampler, ...]:
        return (self._random, self.model)

    def choose(self, study: Study, trial: FrozenTrial) -> BaseSampler:
        return self._random if training_runs(study) < self.startup_runs else self.model

    def random_phase(self, study: Study, trial: FrozenTrial) -> bool:
        """Whether `trial` is (or would be) sampled at random."""
        return self.sampler_of(study, trial) is self._random


# The parameters that fix a configuration's pruned graph, and so whether a limit screens it out.
GRAPH_PARAMS = ("prune_ratio", "prune_importance")


def _same_graph(a: dict[str, Any], b: dict[str, Any]) -> bool:
    shared = [k for k in GRAPH_PARAMS if k in a and k in b]
    return bool(shared) and all(a[k] == b[k] for k in shared)


class TPEAfterScreened(_PerTrial):
    """`model` samples each trial, except the one after a screened configuration or a run stopped early, and
    one whose proposal names a screened graph again: multivariate TPE does.

    GPSampler fits on finished training runs only and never sees a screened (PRUNED) configuration, so it
    would propose the one it just proposed, screened, again; TPE ranks screened trials last and moves away.
    """

    def __init__(self, model: BaseSampler, *, seed: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.tpe = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=0)

    def __repr__(self) -> str:
        return f"TPEAfterScreened({type(self.model).__name__})"

    def samplers(self) -> tuple[BaseSampler, ...]:
        return (self.model, self.tpe)

    def choose(self, study: Study, trial: FrozenTrial) -> BaseSampler:
        done = (t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))
        last = max((r for r in map(record.read, done) if r.lead), key=lambda r: r.number, default=None)
        # A run stopped early has no values either: the GP would not see it, TPE ranks it last.
        return self.tpe if last is not None and (last.record.screened is not None or last.record.stopped is not None) else self.model

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """The model's proposal, unless it names a graph already screened out: then TPE's, for this trial.

        The graph (what a limit screens: size, latency, FLOPs) is fixed by GRAPH_PARAMS; the GP, blind to
        screened trials, proposes the same pruned graph again and again once it believes in it.
        """
        params = super().sample_relative(study, trial, search_space)
        if self.sampler_of(study, trial) is not self.model or not params:
            return params
        screened = [
            r.params for r in map(record.read, study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))
            if r.lead and r.record.screened is not None
        ]
        if any(_same_graph(params, p) for p in screened):
            self._chosen[trial.number] = self.tpe
            return super().sample_relative(study, trial, search_space)
        return params


def make_sampler(seed: int) -> BaseSampler:
    """The sampler a study uses: STARTUP_RUNS random training runs, then Optuna's multi-objective GP.

    The GP models every finished trial (the free precision trials of each run too) and the user's limits;
    the suggestion after a screened configuration comes from TPE, which learns from screened trials.
    """
    if importlib.util.find_spec("scipy") is None:
        raise StudyError("the study's sampler (Optuna's GPSampler) needs scipy, which is not installed; pip install scipy")
    gp = optuna.samplers.GPSampler(seed=seed, n_startup_trials=1)  # the startup is counted in runs, here
    return TrainingRunStartup(TPEAfterScreened(gp, seed=seed), startup_runs=STARTUP_RUNS, seed=seed)
