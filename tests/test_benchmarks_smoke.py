"""The benchmarks' own arithmetic: hypervolume against optuna's, and interleaved latency ratios."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from optuna._hypervolume import compute_hypervolume

from effsearch.onnx_export import export_onnx

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


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
