"""The benchmarks' own arithmetic: hypervolume against optuna's, interleaved latency ratios, overhead.py's rows."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest
import torch
from optuna._hypervolume import compute_hypervolume
from optuna.trial import TrialState, create_trial

from effsearch import record

from effsearch.onnx_export import export_onnx

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def placement():
    return _load("prune_placement")


def test_2d_hypervolume_matches_optuna(placement) -> None:
    rng = np.random.default_rng(0)
    ref = np.array([1.0, 1.0])
    for _ in range(20):
        pts = rng.uniform(0, 1, size=(int(rng.integers(1, 12)), 2))
        assert placement.hv2(pts, ref) == pytest.approx(compute_hypervolume(pts, ref))
    assert placement.hv2(np.array([[0.0, 0.5], [0.5, 0.0]]), ref) == pytest.approx(0.75)


def test_hypervolume_of_runs_uses_the_fixed_reference(placement) -> None:
    run = placement.Run
    dense = 1000
    runs = [run(1, {}, 0.99, 1000, 1.0), run(2, {}, 0.95, 500, 1.0), run(3, {}, 0.85, 100, 1.0)]
    # Accuracy 0.85 lies beyond the reference accuracy 0.90 and adds nothing.
    expected = (0.99 - 0.90) * (1.1 - 1.0) + (0.95 - 0.90) * (1.0 - 0.5)
    assert placement.hypervolume(runs, dense, (0.90, 1.1)) == pytest.approx(expected)
    assert placement.hypervolume(runs[2:], dense, (0.90, 1.1)) == 0.0


def test_interleaved_latency_gives_one_for_the_baseline(tmp_path: Path) -> None:
    compression = _load("compression")
    x = torch.rand(4, 16)
    big = torch.nn.Sequential(torch.nn.Linear(16, 1024), torch.nn.Linear(1024, 1024), torch.nn.Linear(1024, 4))
    paths = {
        0: export_onnx(torch.nn.Linear(16, 4), x, tmp_path / "small.onnx").path,
        1: export_onnx(big, x, tmp_path / "big.onnx").path,  # ~1M multiply-adds against 64: many times slower
    }
    timed = compression.interleaved(paths, 0, x[:1].numpy(), blocks=3, calls=20, warmup=5, threads=1)
    assert timed[0].ratio == 1.0 and len(timed[0].block_p50_ms) == 3 and len(timed[1].block_p50_ms) == 3
    # Ratios are to the baseline, block by block: the big model's is the median of its per-block ratios, well above one.
    per_block = [b / s for b, s in zip(timed[1].block_p50_ms, timed[0].block_p50_ms)]
    assert timed[1].ratio == pytest.approx(float(np.median(per_block))) and timed[1].ratio > 2, (timed[1], per_block)
    assert (timed[1].ratio_lo, timed[1].ratio_hi) == pytest.approx((min(per_block), max(per_block)))


def test_the_int8_benchmark_makes_every_recipe_once_the_default_among_them() -> None:
    from effsearch.compress.quantize import INT8_STATIC, INT8_VARIANTS

    bench = _load("int8_variants")
    labels = [v.label for v in bench.RECIPES]
    assert len(bench.RECIPES) == 24 and len(set(labels)) == 24
    assert INT8_STATIC in bench.RECIPES and all(v in bench.RECIPES for v in INT8_VARIANTS.values())


def _overhead_study() -> optuna.Study:
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
        return None, SimpleNamespace(study=_overhead_study(), run_walls=(3.0, 2.5), pool_starts={})

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


def _arm(hv: float, best: float | None) -> dict:
    return {"final_hv": hv, "curve_final_hv": hv, "best_acc_at_half_latency": best, "epochs": 8, "train_s": 1.0, "wall_s": 1.0, "curve": [[1.0, hv]]}


def test_headline_summarises_all_four_arms_and_a_one_arm_variant() -> None:
    headline = _load("headline")
    four = [
        {"seed": s, "arms": {"effsearch": _arm(0.50, 0.96), "recipe": _arm(0.48, 0.97), "optuna": _arm(0.45, None), "random": _arm(0.40, 0.90)},
         "time_ratio_vs_recipe": r, "time_ratio_vs_optuna": 0.3, "hv_ratio_min": 0.50 / 0.48}
        for s, r in ((0, 0.4), (1, None), (2, 0.2))
    ]
    h = headline.headline(four)
    assert h["arms"] == list(headline.ARMS) and h["seeds"] == [0, 1, 2]
    assert h["time_ratio_vs_recipe"] == 0.4  # a never-reached seed counts as infinitely late
    assert h["best_acc_at_half_latency"]["optuna"] is None and h["best_acc_at_half_latency"]["recipe"] == 0.97
    assert h["goal_met"]  # 0.4 and 0.3 <= 0.5, 1.042 >= 1.02
    # A variant run with effsearch's arm alone: no ratios to other arms, so no goal, and the table lists that arm only.
    one = [{"seed": 0, "arms": {"effsearch": _arm(0.5, 0.96)}}]
    h = headline.headline(one)
    assert h["arms"] == ["effsearch"] and h["time_ratio_vs_recipe"] is None and not h["goal_met"]
    assert headline.table(one).count("\n| 0 |") == 1


def test_every_headline_variant_writes_its_own_files() -> None:
    headline = _load("headline")

    def args(**kw) -> argparse.Namespace:
        base = {"arms": list(headline.ARMS), "no_early_stop": False, "space": None, "epochs": None, "budget_epochs": None}
        return argparse.Namespace(**{**base, **kw})

    assert headline.variant_of(args()) == ""
    assert headline.variant_of(args(arms=["effsearch"], no_early_stop=True)) == "-effsearch-no-early-stop"
    assert headline.variant_of(args(arms=["effsearch"], space=Path("b/prune_finetune.toml"))) == "-effsearch-prune_finetune"
    longer = headline.variant_of(args(arms=["effsearch", "recipe"], epochs=8, budget_epochs=160))
    assert longer == "-effsearch+recipe-epochs-8-budget-160"
    # Runs of other lengths, or another budget, never land in (and are never read back from) the headline's files.
    assert headline.variant_of(args(epochs=8)) != headline.variant_of(args()) != headline.variant_of(args(budget_epochs=80))
