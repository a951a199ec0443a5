"""The stopping rules' replay (benchmarks/tabular/stopping.py) on a small made-up table, and the committed MNIST-1D table."""

from __future__ import annotations

import csv
import itertools
import json
import sys
from pathlib import Path

import pytest

import effsearch.study.early_stop
from effsearch.space import PRECISIONS

TABULAR = Path(__file__).resolve().parents[2] / "benchmarks" / "tabular"
EPOCHS = 4


@pytest.fixture(scope="module")
def stopping():
    sys.path.insert(0, str(TABULAR))
    try:
        import stopping
    finally:
        sys.path.remove(str(TABULAR))
    return stopping


@pytest.fixture
def curves_table(tmp_path: Path) -> Path:
    """8 configurations; those with clip norm 1 never learn (0.2 at every epoch), the others climb to ~0.9."""
    path = tmp_path / "t.csv"
    graphs: dict[tuple[str, str], float] = {}
    fields = ["prune_ratio", "batch_size", "lr", "lr_schedule", "clip_norm", "precision", "graph", "metric", "energy_j",
              "size_bytes", "untrained_latency_ratio", "untrained_size_bytes", "curve"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for prune, lr, clip in itertools.product((0.0, 0.5), (3e-3, 1e-2), (0.0, 1.0)):
            final = 0.2 if clip else 0.9 - prune / 10 + lr
            curve = [{"epoch": e, "metric": 0.2 if clip else final * (1 - 0.3 ** e), "train_s": e, "energy_j": 10.0 * e}
                     for e in range(1, EPOCHS + 1)]
            graph = f"p{int(1000 * (1 - prune))}"
            for i, precision in enumerate(PRECISIONS):
                ratio = (1 - prune / 2) * (1 - i / 10)
                graphs[(graph, precision)] = ratio
                w.writerow({"prune_ratio": prune, "batch_size": 64, "lr": lr, "lr_schedule": "cosine", "clip_norm": clip,
                            "precision": precision, "graph": graph, "metric": curve[-1]["metric"] - i / 200,
                            "energy_j": curve[-1]["energy_j"], "size_bytes": 1000 * ratio, "untrained_latency_ratio": ratio,
                            "untrained_size_bytes": 1000 * ratio, "curve": json.dumps(curve) if precision == "fp32" else ""})
    with open(tmp_path / "t_latency.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["graph", "precision", "p50_ms"])
        w.writeheader()
        w.writerows({"graph": g, "precision": p, "p50_ms": r} for (g, p), r in graphs.items())
    return path


def test_the_rule_replayed_is_effsearchs_own(stopping) -> None:
    assert stopping.stop_rule is effsearch.study.early_stop.stop_rule


def test_effsearchs_rule_stops_runs_that_never_learn_and_finds_more_in_the_same_epochs(stopping, curves_table: Path) -> None:
    curves = stopping.load_curves(curves_table)
    assert curves.epochs == EPOCHS and len(curves.curve) == 8
    budget = 12 * EPOCHS
    ruled = stopping.system(curves, "stream-effsearch", 0, budget)
    plain = stopping.system(curves, "stream-none", 0, budget)
    # The same stream of configurations: without a rule every run trains all its epochs.
    assert plain.stopped == 0 and plain.epochs == [EPOCHS * (i + 1) for i in range(len(plain.epochs))]
    assert ruled.stopped > 0 and ruled.runs > plain.runs
    assert all(e <= budget for e in ruled.epochs) and ruled.hv == sorted(ruled.hv) and 0.0 < ruled.hv[-1] <= 1.0 + 1e-9
    assert ruled.at(budget) >= plain.at(budget)
    # Only the runs that never learn were stopped (none of them holds a point of the true front), before their last epoch.
    assert ruled.front_stopped == 0 and len(ruled.stopped_after) == ruled.stopped
    assert all(1 <= e < EPOCHS for e in ruled.stopped_after)


def test_a_run_that_is_stopped_adds_no_point(stopping, curves_table: Path) -> None:
    curves = stopping.load_curves(curves_table)
    trace = stopping.system(curves, "stream-effsearch", 1, 12 * EPOCHS)
    completed = trace.runs - trace.stopped
    # One hypervolume per completed run (the last may have ended past the budget and is not counted).
    assert completed - 1 <= len(trace.hv) <= completed and trace.stopped > 0
    spent = sum(trace.stopped_after) + EPOCHS * completed
    assert trace.epochs[-1] <= spent and trace.epochs == sorted(trace.epochs)


def test_moasha_arm_runs_syne_tunes_scheduler(stopping, curves_table: Path) -> None:
    pytest.importorskip("syne_tune", reason="syne-tune is in the bench extra, not the test extra")
    curves = stopping.load_curves(curves_table)
    trace = stopping.system(curves, "moasha", 0, 12 * EPOCHS)
    assert trace.stopped > 0 and 0.0 < trace.at(12 * EPOCHS) <= 1.0 + 1e-9


def test_the_committed_mnist1d_table_is_a_whole_grid_with_curves(stopping) -> None:
    table = TABULAR / "mnist1d_cnn.csv"
    meta = json.loads((TABULAR / "mnist1d_cnn.meta.json").read_text())
    curves = stopping.load_curves(table)  # refuses a configuration without every precision, latency or curve
    assert len(curves.table.points) >= 300 and curves.epochs == meta["epochs"]
    assert meta["seed_check"]["epochs"] == meta["epochs"] and meta["seed_check"]["median_abs_delta"] <= 0.01
