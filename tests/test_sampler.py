"""The sampler: random for its first training runs, counted by the record's rule, then the model's."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.samplers import BaseSampler
from optuna.trial import TrialState

import effsearch
from effsearch import record
from effsearch.constraints import Constraints
from effsearch.objectives import parse_objectives
from effsearch.sampler import STARTUP_RUNS, TPEAfterScreened, TrainingRunStartup, make_sampler
from effsearch.space import load_space
from effsearch.study import Instruments, TuneSettings, open_study
from effsearch.userfile import load_user_file, probe

ROOT = Path(__file__).resolve().parent.parent
TABULAR = ROOT / "benchmarks" / "tabular"
PRECISIONS = ("fp32", "fp16", "int8_dynamic", "int8_static")
MODEL_X = 0.123  # what the stand-in model samples: a trial with it was sampled by the model
DISTS = {"x": FloatDistribution(0.0, 1.0), "precision": CategoricalDistribution(PRECISIONS)}


class _Model(BaseSampler):
    """A stand-in model sampler whose samples are recognisable."""

    def infer_relative_search_space(self, study, trial) -> dict[str, Any]:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        return MODEL_X if param_name == "x" else param_distribution.choices[0]


def _study(startup_runs: int, model: BaseSampler | None = None) -> optuna.Study:
    sampler = TrainingRunStartup(model or _Model(), startup_runs=startup_runs, seed=0)
    return optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)


def _ask(study: optuna.Study) -> tuple[optuna.Trial, bool]:
    """A new lead trial, and whether the model sampled it."""
    trial = study.ask()
    x = trial.suggest_float("x", 0.0, 1.0)
    trial.suggest_categorical("precision", PRECISIONS)
    record.write(trial, lead=True)
    return trial, x == MODEL_X


def _others(study: optuna.Study, trial: optuna.Trial, state: TrialState, **attrs: Any) -> None:
    """The lead's other precisions, recorded as effsearch records them."""
    for p in PRECISIONS[1:]:
        study.add_trial(optuna.trial.create_trial(
            state=state, values=[0.5, 1.0] if state == TrialState.COMPLETE else None,
            params={"x": trial.params["x"], "precision": p}, distributions=DISTS,
            user_attrs=record.TrialRecord(lead=False, run_trial=trial.number, **attrs).user_attrs(),
            constraints={"max_size_mb": 1.0} if state == TrialState.PRUNED else None,
        ))


def _training_run(study: optuna.Study) -> bool:
    trial, by_model = _ask(study)
    study.tell(trial, [0.9, 1.0])
    _others(study, trial, TrialState.COMPLETE)
    return by_model


def _screened(study: optuna.Study) -> bool:
    trial, by_model = _ask(study)
    record.write(trial, screened="screened: size over the limit for every precision")
    trial.set_constraint("max_size_mb", 1.0)
    study.tell(trial, state=TrialState.PRUNED)
    _others(study, trial, TrialState.PRUNED, screened="screened: size over the limit for every precision")
    return by_model


def test_make_sampler_is_the_sampler_a_study_uses(tmp_path: Path) -> None:
    assert "make_sampler" in effsearch.__all__ and effsearch.make_sampler is make_sampler
    sampler = make_sampler(3)
    assert isinstance(sampler, TrainingRunStartup) and sampler.startup_runs == STARTUP_RUNS
    uf = load_user_file(ROOT / "tests" / "userfiles" / "tiny_mlp.py")
    info, _ = probe(uf)
    keys, dirs = parse_objectives(None, uf.metric_key, uf.registration.metric_direction)
    settings = TuneSettings(
        study_name="s", storage_url=f"sqlite:///{tmp_path / 's.db'}", trials=1, space=load_space(None, 1), objectives=keys,
        directions=dirs, epochs=1, seed=3, artifacts=tmp_path, constraints=Constraints(),
    )
    study = open_study(settings, uf=uf, probe=info, tools=Instruments.choose())
    assert repr(study.sampler) == repr(sampler)


def test_random_phase_lasts_the_training_runs_whatever_else_is_recorded() -> None:
    study = _study(startup_runs=3)
    assert not _training_run(study)  # the first run: random
    for _ in range(10):  # screened configurations are no runs, however many trials they record
        assert not _screened(study)
    trial, by_model = _ask(study)  # interrupted: run again, not counted
    assert not by_model
    record.write(trial, fail_reason="interrupted")
    study.tell(trial, state=TrialState.FAIL)
    assert not _training_run(study)
    trial, by_model = _ask(study)  # failed for a reason of its own: a training run
    assert not by_model
    record.write(trial, fail_reason="objective 'accuracy' is nan, not a finite number")
    study.tell(trial, state=TrialState.FAIL)
    assert len(study.trials) > 3 * len(PRECISIONS)  # far past any startup counted in trials
    assert _training_run(study) and _screened(study)  # three runs exist: the model samples from now on


def test_the_suggestion_after_a_screened_configuration_comes_from_tpe() -> None:
    study = _study(startup_runs=1, model=TPEAfterScreened(_Model(), seed=0))
    assert not _training_run(study)  # the startup run: random
    assert _training_run(study)  # the model's
    assert _screened(study)  # the model's again, screened out
    assert not _screened(study)  # TPE's, screened out too
    assert not _training_run(study)  # TPE's: the last configuration was screened
    assert _training_run(study)  # the model's again


class _Insisting(_Model):
    """A stand-in model that proposes one pruned graph whatever it is shown (as the GP does, blind to screening)."""

    RATIO = 0.2
    DIST = FloatDistribution(0.0, 0.75)

    def infer_relative_search_space(self, study, trial) -> dict[str, Any]:
        return {"prune_ratio": self.DIST}

    def sample_relative(self, study, trial, search_space) -> dict[str, Any]:
        return {"prune_ratio": self.RATIO}


def _with_prune(study: optuna.Study, ratio: float, screened: bool) -> None:
    """A finished lead trial at `ratio`: a screened configuration, or a completed training run."""
    attrs = record.TrialRecord(lead=True, screened="screened: size over the limit" if screened else None).user_attrs()
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.PRUNED if screened else TrialState.COMPLETE, values=None if screened else [0.9, 1.0],
        params={"prune_ratio": ratio}, distributions={"prune_ratio": _Insisting.DIST}, user_attrs=attrs,
    ))


@pytest.mark.parametrize("screened_at", [0.2, 0.5])
def test_a_proposal_of_a_screened_graph_goes_to_tpe(screened_at: float) -> None:
    sampler = TPEAfterScreened(_Insisting(), seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    _with_prune(study, 0.6, screened=False)
    _with_prune(study, screened_at, screened=True)
    _with_prune(study, 0.7, screened=False)  # the last run was trained: the model is asked first
    trial = study.ask()
    ratio = trial.suggest_float("prune_ratio", 0.0, 0.75)
    if screened_at == _Insisting.RATIO:
        assert ratio != _Insisting.RATIO and sampler.sampler_of(study, trial) is sampler.tpe, "TPE, not the screened graph again"
    else:
        assert ratio == _Insisting.RATIO and sampler.sampler_of(study, trial) is sampler.model


class _Watching(_Model):
    """The stand-in model, keeping how many trials of a reference run each of its calls saw."""

    def __init__(self) -> None:
        self.seen_reference: list[int] = []
        self.seen: list[int] = []

    def sample_independent(self, study, trial, param_name, param_distribution) -> Any:
        trials = study.get_trials(deepcopy=False)
        self.seen.append(len(trials))
        self.seen_reference.append(sum(record.read(t).reference for t in trials))
        return super().sample_independent(study, trial, param_name, param_distribution)


def test_the_model_never_sees_the_trials_of_a_reference_run() -> None:
    model = _Watching()
    study = _study(startup_runs=1, model=TPEAfterScreened(model, seed=0))
    study.enqueue_trial({"x": 0.5, "precision": "fp32"}, user_attrs=record.baseline_attrs(reference=True))
    trial, _ = _ask(study)  # the reference run: the model as given, its four precisions
    study.tell(trial, [0.99, 1.0])
    _others(study, trial, TrialState.COMPLETE, reference=True)
    assert _training_run(study)  # after one run (the reference) the model samples
    assert model.seen and set(model.seen_reference) == {0}
    assert set(model.seen) == {1} and len(study.trials) == 8  # it saw only the trial it samples, not the 4 of the reference


def test_make_sampler_hands_over_to_its_model_after_the_startup_runs() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(0))
    sampler = study.sampler
    for _ in range(STARTUP_RUNS):
        trial, _ = _ask(study)
        assert sampler.random_phase(study, study.trials[-1])
        study.tell(trial, [0.9, trial.params["x"]])
        _others(study, trial, TrialState.COMPLETE)
    trial = study.ask()
    assert not sampler.random_phase(study, study.trials[-1])
    assert 0.0 <= trial.suggest_float("x", 0.0, 1.0) <= 1.0


# -- the tabular benchmark ---------------------------------------------------------------------------


def _load_replay():
    spec = importlib.util.spec_from_file_location("bench_tabular_replay", TABULAR / "replay.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_table(tmp_path: Path) -> Path:
    """A synthetic 2 x 1 x 2 x 1 x 2 grid: pruning shrinks the file and costs accuracy."""
    path = tmp_path / "tiny.csv"
    fields = ["prune_ratio", "batch_size", "lr", "lr_schedule", "clip_norm", "precision", "metric", "latency_ms",
              "energy_j", "size_bytes", "untrained_size_bytes"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for prune in (0.0, 0.5):
            for lr in (3e-3, 1e-2):
                for clip in (0.0, 1.0):
                    for i, p in enumerate(PRECISIONS):
                        size = (1 - prune) * 1000 / (1 + i)
                        w.writerow({"prune_ratio": prune, "batch_size": 64, "lr": lr, "lr_schedule": "cosine", "clip_norm": clip,
                                    "precision": p, "metric": 0.9 - prune / 5 + lr - clip / 100,
                                    "latency_ms": 1 - prune / 2 + i / 10,
                                    "energy_j": 1 + lr * 10 + clip, "size_bytes": size, "untrained_size_bytes": size})
    return path


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """GPSampler's torch threads contend on a small shared machine (3x slower than one, as replay.py's jobs found)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_replay_on_a_tiny_table_runs(tiny_table: Path, one_torch_thread: None) -> None:
    replay = _load_replay()
    table = replay.load_table(tiny_table)
    for limit in (None, table.size_limit()):
        # Under the size limit only the pruned configurations' int8_static files fit: 12 runs find one.
        r = replay.replay(table, make_sampler, 1, 12, limit, checkpoints=(3, 6, 12))
        assert set(r.hv) == {3, 6, 12} and 0.0 <= r.hv[3] <= r.hv[6] <= r.hv[12] <= 1.0 + 1e-9 and r.hv[12] > 0
        assert r.stopped_at is None and (r.screened > 0) == (limit is not None)  # screened: no runs, not counted
    # 8 configurations, 60 runs: every candidate finds the whole front; the CLI prints its verdict. Two jobs:
    # the default sampler's two arms (nearly all of the time) run side by side.
    r = subprocess.run([sys.executable, str(TABULAR / "replay.py"), "--table", str(tiny_table), "--seeds", "1", "--jobs", "2",
                        "--candidates", "default", "tpe-ind-8", "random"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "open: default after 30 runs 1.000" in r.stderr and "size: default after 30 runs 1.000" in r.stderr


def test_the_committed_table_is_a_whole_grid_of_at_least_500_configurations() -> None:
    replay = _load_replay()
    table = replay.load_table(replay.BREAST_CANCER)  # refuses a table with a configuration missing a precision
    assert len(table.points) >= 500
    assert all(set(by) == set(PRECISIONS) for by in table.points.values())
