"""The front from figures re-measured together: it can differ from the stored one, and ties are shown."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import create_trial

from effsearch import record
from effsearch.results.front import front_rows, knee

DIST = {"precision": CategoricalDistribution(["fp32", "int8_static"])}


def _study(latencies: dict[int, float], accuracy: dict[int, float], sizes: dict[int, int] | None = None) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "latency_ms"])
    record.write_meta(study, record.StudyMeta.from_dict({"metric_key": "accuracy", "metric_direction": "maximize", "energy_source": "estimate"}))
    for n, lat in latencies.items():
        metrics = {"accuracy": accuracy[n], "latency_ms": lat, "size_bytes": (sizes or {}).get(n, 1000 + n)}
        study.add_trial(create_trial(
            params={"precision": "fp32"}, distributions=DIST, values=[accuracy[n], lat],
            user_attrs=record.TrialRecord(lead=True, baseline=n == 0, metrics=metrics, onnx=f"/x/{n}.onnx").user_attrs(),
        ))
    return study


def _entry(timed: dict[int, tuple[float, float, float]]) -> dict:
    return {"host": "here", "when": 1.0, "trials": {
        str(n): {"p50_ms": m, "p90_ms": m * 1.1, "lo_ms": lo, "hi_ms": hi, "ratio": m, "ratio_lo": lo, "ratio_hi": hi, "ratio_cv": 0.01,
                 "blocks": 5, "calls": 100}
        for n, (m, lo, hi) in timed.items()
    }}


def test_the_front_follows_the_remeasured_latency_and_keeps_the_first_figure() -> None:
    # Stored: trial 2 (0.08 ms) looks slower than trial 1 (0.05 ms) at lower accuracy, so it is dominated.
    study = _study({0: 0.10, 1: 0.05, 2: 0.08}, {0: 0.95, 1: 0.93, 2: 0.92})
    assert [r.trial for r in front_rows(study)] == [0, 1]
    # Measured together, trial 2 is the fastest: it joins the front.
    record.write_remeasured(study, _entry({0: (0.10, 0.099, 0.101), 1: (0.06, 0.059, 0.061), 2: (0.03, 0.029, 0.031)}))
    rows = front_rows(study)
    assert [r.trial for r in rows] == [0, 1, 2]
    two = next(r for r in rows if r.trial == 2)
    assert two.metrics["latency_ms"] == 0.03 and two.metrics["latency_first_ms"] == 0.08
    assert knee(study, rows) is not None


def test_a_remeasurement_that_misses_a_front_point_is_not_used() -> None:
    study = _study({0: 0.10, 1: 0.05}, {0: 0.95, 1: 0.93})
    record.write_remeasured(study, _entry({0: (0.2, 0.19, 0.21)}))  # trial 1 (on the stored front) not timed
    rows = front_rows(study)
    assert {r.trial for r in rows} == {0, 1} and all("latency_first_ms" not in r.metrics for r in rows)


def test_points_whose_intervals_overlap_and_whose_exact_figures_agree_are_within_noise() -> None:
    study = _study({0: 0.10, 1: 0.05, 2: 0.05}, {0: 0.95, 1: 0.93, 2: 0.93}, sizes={0: 500, 1: 400, 2: 400})
    record.write_remeasured(study, _entry({0: (0.10, 0.099, 0.101), 1: (0.050, 0.048, 0.052), 2: (0.051, 0.049, 0.053)}))
    rows = {r.trial: r for r in front_rows(study)}
    # 2 is dominated by 1 by a hair inside the noise: 1 is on the front, and marked as indistinguishable from 2.
    assert set(rows) == {0, 1}
    assert rows[1].within_noise == (2,) and rows[0].within_noise == ()


def test_candidates_include_points_within_noise_of_the_front() -> None:
    study = _study({0: 0.10, 1: 0.05, 2: 0.07, 3: 0.2}, {0: 0.95, 1: 0.93, 2: 0.92, 3: 0.90})
    chosen = {t.number for t in candidates_with_files(study)}
    # 2 is dominated by 1 only through latency (0.07 / 1.5 < 0.05 would not be dominated); 3 stays out.
    assert chosen == {0, 1, 2}


def candidates_with_files(study: optuna.Study):
    import effsearch.study.remeasure as rm

    real = Path.is_file
    try:
        Path.is_file = lambda self: str(self).startswith("/x/") or real(self)
        return rm.candidates(study)
    finally:
        Path.is_file = real


@pytest.mark.slow
def test_tune_remeasures_its_front_and_the_json_says_which_figure_is_which(digits_study, cli) -> None:
    cwd, url = digits_study
    study = optuna.load_study(study_name="digits-cnn", storage=url)
    entry = record.read_remeasured(study)
    assert entry is not None and entry["trials"], "tune re-measured the front at its end"
    rows = json.loads(cli("pareto", "--json", "--storage", url, cwd=cwd).stdout)
    assert rows
    for row in rows:
        m = row["metrics"]
        timed = entry["trials"][str(row["trial"])]
        assert m["latency_ms"] == timed["p50_ms"]
        stored = study.trials[row["trial"]].user_attrs["metrics"]["latency_ms"]
        assert m["latency_first_ms"] == stored
        # The interval is this re-measurement's, of the same trial as its median.
        assert m["latency_interval_ms"] == [timed["lo_ms"], timed["hi_ms"]]
        assert m["remeasured_on"] == entry["host"]
    assert np.isfinite(entry["seconds"]) and entry["seconds"] < 60
