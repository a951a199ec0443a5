"""The references a run is judged against: each precision of a completed run is credited with its own curve."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import create_trial

from effsearch import record
from effsearch.study.early_stop import stop_rule

OBJECTIVES = ("accuracy", "latency_ms", "energy_j")
# The completed run's torch curve (4 epochs, 1 J each); its fp32 artifact ends at the torch figure, its
# int8 artifact (twice as fast) ten points lower.
TORCH = (0.60, 0.85, 0.88, 0.90)
FINAL = {"fp32": 0.90, "int8_static": 0.80}
LATENCY = {"fp32": 1.0, "int8_static": 0.5}


def completed_run() -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    dists = {"precision": CategoricalDistribution(list(FINAL))}
    curve = [{"epoch": k + 1, "metric": m, "energy_j": k + 1.0, "train_s": k + 1.0} for k, m in enumerate(TORCH)]
    for number, precision in enumerate(FINAL):
        attrs = record.TrialRecord(
            lead=number == 0 or None, run=1, run_trial=0, config={"epochs": len(TORCH)},
            metrics={"accuracy": FINAL[precision], "latency_ms": LATENCY[precision], "energy_j": 4.0},
            untrained={"latency_ratio": LATENCY[precision]}, curve=curve if number == 0 else None,
        ).user_attrs()
        study.add_trial(create_trial(params={"precision": precision}, distributions=dists, user_attrs=attrs,
                                     values=[FINAL[precision], LATENCY[precision], 4.0]))
    return study


def rule_for(study: optuna.Study):
    untrained = {p: {"latency_ratio": LATENCY[p]} for p in FINAL}
    return stop_rule(study, objectives=OBJECTIVES, metric_key="accuracy", maximize=True, untrained=untrained, epochs=len(TORCH))


def test_each_precision_of_a_completed_run_is_credited_with_its_torch_curve_shifted_to_its_final_metric() -> None:
    rule = rule_for(completed_run())
    assert rule is not None
    by_latency = {p.figures: p.metric for p in rule.references[3]}
    assert by_latency[(1.0,)] == pytest.approx(0.88)  # fp32: the torch curve (its artifact ends where torch does)
    assert by_latency[(0.5,)] == pytest.approx(0.78)  # int8: ten points lower at every epoch


def test_a_run_beating_the_int8_curve_but_not_the_fp32_one_is_not_stopped() -> None:
    # After epoch 3 the run is at 0.82 (0.01 gained): its fp32 point is 0.06 behind the reference's, but its
    # int8 point (as fast as the reference's int8) is ahead of what the reference's int8 artifact reached.
    rule = rule_for(completed_run())
    assert rule.check(3, 0.82, 3.5, previous=0.81) is None
    # Behind the int8 curve too, it is stopped.
    assert rule.check(3, 0.70, 3.5, previous=0.69) is not None
