"""benchmarks/overhead.py over a study whose runs were measured or stopped early (tune stubbed: no training)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
from optuna.trial import TrialState, create_trial

from effsearch import record

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _study() -> optuna.Study:
    """A measured run (1 s of training, 3 s wall), one stopped early (2 s, 2.5 s wall) and a precision trial."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    measured = {"wall_s": 2.9, "train_s": 1.0, "build_s": 0.1, "run_s": 1.2, "export_s": 0.3, "quantize_s": 0.2, "measure_s": 0.4}
    stopped = {"wall_s": 2.4, "train_s": 2.0, "build_s": 0.1, "run_s": 2.2}  # nothing exported or measured
    study.add_trial(create_trial(state=TrialState.COMPLETE, values=[0.9, 1.0],
                                 user_attrs=record.TrialRecord(lead=True, baseline=True, timing=measured).user_attrs()))
    study.add_trial(create_trial(state=TrialState.COMPLETE, values=[0.9, 0.5], user_attrs=record.TrialRecord(run_trial=0).user_attrs()))
    study.add_trial(create_trial(state=TrialState.PRUNED,
                                 user_attrs=record.TrialRecord(lead=True, timing=stopped, stopped="stopped at epoch 1").user_attrs()))
    return study


def test_overhead_reports_measured_and_stopped_runs_with_early_stopping_on_and_off(monkeypatch, capsys) -> None:
    bench = _load("overhead")
    asked = []

    def tune(settings, **_):
        asked.append(settings.early_stop)
        return None, SimpleNamespace(study=_study(), run_walls=(3.0, 2.5), pool_starts={})

    monkeypatch.setattr(bench, "tune", tune)
    monkeypatch.setattr(bench, "load_user_file", lambda path: SimpleNamespace(
        name="stub", metric_key="accuracy", registration=SimpleNamespace(metric_direction="maximize")))
    monkeypatch.setattr(bench, "probe", lambda uf: (None, None))
    args = argparse.Namespace(runs=2, epochs=2, world_size=[1], file=BENCHMARKS, early_stop="both", rank_start_only=False)
    bench.studies(args)
    printed = capsys.readouterr().out
    assert asked == [True, False], "one study with early stopping, one without"
    assert "stopped early" in printed, printed
    # Rest: 3.0 - 1.0 for the measured run, 2.5 - 2.0 for the stopped one; ratios 2.0 and 0.25.
    assert "median rest: measured runs 2.00 s (1), after the first 2.00 s, stopped runs 0.50 s (1); median ratio (wall-train)/train 1.125" in printed, printed
    assert "world_size=1, early stopping on" in printed and "world_size=1, early stopping off" in printed
