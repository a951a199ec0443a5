"""One source of the figures a user is shown: the front, the report's points and hypervolume, the JSON,
the table and the model card all read a trial's re-measured figures where the front does, the pruning its
run built, and the batch the study times at."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import create_trial
from rich.console import Console

from effsearch import record
from effsearch.export.card import model_card
from effsearch.export.card_md import card_markdown
from effsearch.onnx_export import export_onnx
from effsearch.report.html import render_html
from effsearch.report.info import build_report
from effsearch.report.table import front_table
from effsearch.results import hypervolume as hv
from effsearch.results.front import front_rows, row_json, study_info
from effsearch.results.pick import pick_trial

DISTS = {"prune_ratio": FloatDistribution(0.0, 0.75), "precision": CategoricalDistribution(["fp32", "int8_static"])}
BATCH = 4
# Stored (first) latencies: the three trials trade accuracy for latency, all on Optuna's front.
FIRST = {0: 0.10, 1: 0.06, 2: 0.04}
# Re-measured together: trial 2 is slower than trial 1, which is more accurate, so it leaves the front.
AGAIN = {0: 0.10, 1: 0.05, 2: 0.08}
ACCURACY = {0: 0.95, 1: 0.93, 2: 0.92}


def _study() -> optuna.Study:
    """Run 1: the dense baseline (trial 0). Run 2: trial 1 asked for 0.5 pruning and built 0.47; trial 2 is its int8."""
    study = optuna.create_study(study_name="shown", directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "latency_ms"])
    record.write_meta(study, record.StudyMeta(
        metric=record.Metric(key="accuracy", direction="maximize"), objectives=("accuracy", "latency_ms"),
        energy=record.Energy(source="estimate"), latency=record.Latency(target="cpu", threads=1, batch=BATCH),
    ))
    untrained = {"latency_ms": 0.05, "latency_ratio": 0.6, "protocol": {"batch": 1, "reference": "untrained dense fp32"}}
    runs = {0: (0.0, "fp32", 0, 1), 1: (0.5, "fp32", 1, 2), 2: (0.5, "int8_static", 1, 2)}
    for n, (asked, precision, run_trial, run) in runs.items():
        lead = n == run_trial
        attrs = record.TrialRecord(
            lead=lead, baseline=n == 0, run=run, run_trial=run_trial, onnx=f"/x/{n}.onnx",
            metrics={"accuracy": ACCURACY[n], "latency_ms": FIRST[n], "size_bytes": 1000 - 100 * n},
            prune_achieved=(0.0 if n == 0 else 0.47) if lead else None, untrained=untrained if n == 1 else None,
        ).user_attrs()
        study.add_trial(create_trial(params={"prune_ratio": asked, "precision": precision}, distributions=DISTS,
                                     values=[ACCURACY[n], FIRST[n]], user_attrs=attrs))
    timed = {str(n): {"p50_ms": v, "p90_ms": v * 1.1, "lo_ms": v * 0.99, "hi_ms": v * 1.01, "ratio": v / 0.1,
                      "ratio_lo": v / 0.1, "ratio_hi": v / 0.1} for n, v in AGAIN.items()}
    record.write_remeasured(study, {"host": "here", "when": 1.0, "trials": timed})
    return study


def test_the_report_plots_and_measures_the_figures_the_front_is_chosen_by() -> None:
    study = _study()
    report = build_report(study, "sqlite:///shown.db")
    assert {e.row.trial for e in report.front} == {0, 1}
    points = {p.trial: p for p in report.points}
    # Every point sits at its re-measured latency: trial 2, off the front, is drawn where it was measured.
    assert {n: p.values["latency_ms"] for n, p in points.items()} == AGAIN
    assert points[2].state == "dominated"
    # The hypervolume and its ranges are those of the re-measured figures.
    values = np.array([[ACCURACY[n], AGAIN[n]] for n in sorted(AGAIN)])
    h = report.hypervolume
    assert h.values == pytest.approx(hv.history(values, ("maximize", "minimize")))
    assert h.lo[1] == pytest.approx(min(AGAIN.values())) and h.hi[1] == pytest.approx(max(AGAIN.values()))
    latency_axis = next(d for d in report.parallel if d.name == "latency_ms")
    assert latency_axis.values == tuple(AGAIN[n] for n in sorted(AGAIN))
    # The page's plotted front points carry the same figures.
    page = render_html(report)
    assert '"latency": 0.05' in page and '"latency": 0.06' not in page


def test_export_by_number_ships_the_figures_shown(tmp_path: Path) -> None:
    study = _study()
    row = pick_trial(study, 2)
    assert row.metrics["latency_ms"] == AGAIN[2] and row.metrics["latency_first_ms"] == FIRST[2]
    model = export_onnx(torch.nn.Linear(8, 2).eval(), torch.randn(2, 8), tmp_path / "m.onnx").path
    card = model_card(study, row, url="sqlite:///shown.db", out=tmp_path / "m.onnx", model=model,
                      check={"metric": "accuracy", "samples": 1, "recorded": 0.92, "difference": 0.0, "tolerance": 0.01},
                      user_file=tmp_path / "m.py")
    assert card["metrics"]["latency_ms"] == AGAIN[2]
    assert "re-measured together" in card["measurement"]["latency"]["figure"]
    # The card of a study timed at batch 4 says batch 4, never batch 1.
    assert f"batch {BATCH}" in card["measurement"]["energy"]
    md = card_markdown(card)
    assert "batch 1" not in md and f"batch {BATCH}" in md
    assert "pruned 0.47 (asked 0.5)" in md


def test_untrained_figures_carry_the_batch_the_study_times() -> None:
    rows = {r.trial: r for r in front_rows(_study())}
    assert row_json(rows[1])["untrained"]["protocol"]["batch"] == BATCH


def test_the_pruning_shown_is_what_the_run_built() -> None:
    study = _study()
    rows = {r.trial: r for r in front_rows(study)}
    one = row_json(rows[1])
    assert one["prune_achieved"] == 0.47 and one["params"]["prune_ratio"] == 0.5  # built, and asked
    assert row_json(pick_trial(study, 2))["prune_achieved"] == 0.47  # a run's other precisions share what it built
    console = Console(record=True, width=300)
    console.print(front_table(study_info(study), list(rows.values())))
    lines = console.export_text().splitlines()
    cells = [[c.strip() for c in re.split(r"[│┃]", l)] for l in lines if "│" in l or "┃" in l]
    column = cells[0].index("prune")
    assert next(c[column] for c in cells if c[1] == "1") == "0.47"
    page = render_html(build_report(study, "sqlite:///shown.db"))
    assert "0.47 (asked 0.5)" in page
