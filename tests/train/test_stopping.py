"""The early-stopping rule: a run stops when every precision point is dominated, by the margin, at the same epoch."""

from __future__ import annotations

import math

import pytest

from effsearch.train.stopping import CATCH_UP, STOP_MARGIN, Point, StopRule, pre_training_value, unstoppable
from effsearch.train.validation import VALIDATION_SAMPLES, validation_part


def rule(refs: dict[int, tuple[Point, ...]], own=((1.0,),), *, maximize=True, energy=True, first_epoch=2) -> StopRule:
    return StopRule("accuracy", maximize, ("latency_ms",), own, refs, energy=energy, epochs=8, first_epoch=first_epoch)


REF = Point(run=1, metric=0.90, energy_j=10.0, figures=(1.0,))


def test_a_point_dominated_beyond_the_margin_stops_the_run_with_its_epoch_and_the_run_that_beat_it() -> None:
    why = rule({2: (REF,)}).check(2, 0.50, 12.0, previous=0.50)
    assert why is not None
    assert "epoch 2 of 8" in why and "run 1" in why and "0.9" in why


def test_within_the_margin_the_run_goes_on() -> None:
    just_within = 0.90 - STOP_MARGIN * 0.90 + 1e-6
    assert rule({2: (REF,)}).check(2, just_within, 12.0, previous=just_within) is None
    assert rule({2: (REF,)}).check(2, just_within - 2e-6, 12.0, previous=just_within - 2e-6) is not None


def test_no_stop_before_the_first_epoch_nor_without_a_reference_at_that_epoch() -> None:
    r = rule({1: (REF,), 2: (REF,)}, first_epoch=2)
    assert r.check(1, 0.1, 12.0, previous=0.1) is None
    assert r.check(3, 0.1, 12.0, previous=0.1) is None  # no completed run has a point at epoch 3


def test_a_reference_that_spent_more_energy_or_is_slower_does_not_dominate() -> None:
    assert rule({2: (REF,)}).check(2, 0.5, 9.0, previous=0.5) is None  # spent less so far
    slower = Point(run=1, metric=0.9, energy_j=1.0, figures=(1.5,))
    assert rule({2: (slower,)}).check(2, 0.5, 12.0, previous=0.5) is None
    # Energy not an objective: spending less does not save the run.
    assert rule({2: (REF,)}, energy=False).check(2, 0.5, 9.0, previous=0.5) is not None


def test_every_precision_point_must_be_dominated() -> None:
    fp32, int8 = (1.0,), (0.4,)
    refs = {2: (REF,)}
    assert rule(refs, own=(fp32, int8)).check(2, 0.5, 12.0, previous=0.5) is None  # the int8 point is faster than any reference
    refs = {2: (REF, Point(run=2, metric=0.9, energy_j=10.0, figures=(0.4,)))}
    assert rule(refs, own=(fp32, int8)).check(2, 0.5, 12.0, previous=0.5) is not None


def test_a_metric_minimised_and_a_non_finite_metric() -> None:
    loss_ref = Point(run=1, metric=0.20, energy_j=10.0, figures=(1.0,))
    r = rule({2: (loss_ref,)}, maximize=False)
    assert r.check(2, 0.50, 12.0, previous=0.50) is not None
    assert r.check(2, 0.201, 12.0, previous=0.201) is None
    assert r.check(2, math.nan, 12.0, previous=math.nan) is not None


def test_objectives_outside_metric_energy_and_pre_training_figures_turn_stopping_off() -> None:
    assert unstoppable(("accuracy", "latency_ms", "energy_j"), "accuracy") is None
    assert unstoppable(("accuracy", "size_bytes", "flops", "param_count", "latency_p90_ms"), "accuracy") is None
    why = unstoppable(("accuracy", "train_s"), "accuracy")
    assert why is not None and "'train_s'" in why
    assert "not an objective" in unstoppable(("latency_ms", "energy_j"), "accuracy")


def test_latency_is_compared_as_the_untrained_ratio_to_the_dense_model() -> None:
    u = {"latency_ms": 0.2, "latency_p90_ms": 0.3, "latency_ratio": 0.5, "size_bytes": 100, "flops": 7, "param_count": 3}
    assert pre_training_value("latency_ms", u) == 0.5
    assert pre_training_value("latency_p90_ms", u) == pytest.approx(0.75)
    assert pre_training_value("size_bytes", u) == 100


def test_a_large_validation_set_is_validated_on_a_fixed_evenly_spaced_part() -> None:
    small = list(range(300))
    assert validation_part(small) is small
    big = list(range(5000))
    part = validation_part(big)
    assert len(part) == VALIDATION_SAMPLES >= 512
    assert list(validation_part(big).indices) == list(part.indices)  # the same samples at every epoch
    assert part[0] == 0 and part[len(part) - 1] > 4900  # spread over the whole set, not its head


def test_a_lead_smaller_than_what_the_reference_still_gained_does_not_stop_the_run() -> None:
    # After one epoch the reference was at 0.24 and ended at 0.98: 0.014 behind it says nothing yet.
    early = Point(run=8, metric=0.244, energy_j=1.0, figures=(1.0,), gain=0.74)
    assert rule({1: (early,)}, first_epoch=1).check(1, 0.230, 2.0, previous=0.230) is None
    # Far enough behind (more than CATCH_UP of the gain), it does.
    behind = 0.244 - CATCH_UP * 0.74 - 0.01
    assert rule({1: (early,)}, first_epoch=1).check(1, behind, 2.0, previous=behind) is not None


# A fast starter that completed: 6 epochs, its energy 1 J per epoch, its curve flattening at 0.91.
FAST = (0.60, 0.80, 0.86, 0.89, 0.90, 0.91)


def fast_starter() -> StopRule:
    refs = {k + 1: (Point(run=1, metric=m, energy_j=k + 1.0, figures=(1.0,), gain=FAST[-1] - m),) for k, m in enumerate(FAST)}
    return StopRule("accuracy", True, ("latency_ms",), ((1.0,),), refs, epochs=len(FAST), first_epoch=1)


def stops_at(r: StopRule, untrained: float, curve: tuple[float, ...]) -> int | None:
    """The epoch after which a run with this curve (and this metric before its first epoch) is stopped, or None."""
    previous = untrained
    for epoch, metric in enumerate(curve, start=1):
        if r.check(epoch, metric, epoch + 0.5, previous=previous) is not None:
            return epoch
        previous = metric
    return None


def test_a_slow_starter_still_climbing_fast_enough_to_close_the_gap_is_not_stopped() -> None:
    # 0.35 behind after one epoch (more than a quarter of what the fast starter still gained), but it climbs
    # 0.15-0.2 an epoch and ends above the fast starter, on the front.
    slow = (0.25, 0.45, 0.65, 0.82, 0.90, 0.93)
    assert slow[-1] > FAST[-1]
    assert stops_at(fast_starter(), 0.10, slow) is None


def test_a_run_that_does_not_learn_is_still_stopped_after_its_first_epoch() -> None:
    assert stops_at(fast_starter(), 0.10, (0.11, 0.10, 0.12, 0.10, 0.11, 0.10)) == 1


def test_a_run_that_flattens_far_behind_is_stopped_once_its_gain_cannot_close_the_gap() -> None:
    # After epoch 2: 0.25 behind, 0.15 gained, 4 epochs left: it goes on. After epoch 3: 0.24 behind, and its
    # last gain (0.07) times the 3 epochs left falls short.
    assert stops_at(fast_starter(), 0.10, (0.40, 0.55, 0.62, 0.64, 0.645, 0.65)) == 3


def test_the_reason_names_what_the_run_itself_could_still_gain() -> None:
    why = fast_starter().check(4, 0.64, 5.0, previous=0.62)
    assert why is not None and "after epoch 4 of 6" in why and "2 epochs left add 0.04" in why
