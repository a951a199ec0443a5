"""Learning-rate schedules: linear warm-up to the base lr, then each schedule's shape."""

from __future__ import annotations

import warnings

import pytest
import torch

from effsearch.train.schedules import build_scheduler

BASE_LR = 0.1
STEPS = 100
WARMUP_FRAC = 0.1
WARMUP = 10  # round(WARMUP_FRAC * STEPS)


def lrs(name: str, steps: int = STEPS, warmup_frac: float = WARMUP_FRAC) -> list[float]:
    """The lr each of the `steps` optimizer steps runs with (the scheduler steps after each)."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=BASE_LR)
    sched = build_scheduler(opt, name, steps, warmup_frac, BASE_LR)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    return out


@pytest.mark.parametrize("name", ["constant", "step", "cosine"])
def test_warmup_rises_linearly_to_the_base_lr(name):
    got = lrs(name)
    ramp = got[: WARMUP + 1]
    assert ramp[0] < BASE_LR / 5, "training starts well below the base lr"
    assert all(b > a for a, b in zip(ramp, ramp[1:])), "the lr rises at every warm-up step"
    assert ramp[-1] == pytest.approx(BASE_LR)
    steps = [b - a for a, b in zip(ramp, ramp[1:])]
    assert max(steps) == pytest.approx(min(steps), rel=1e-6), "the warm-up is linear"
    assert max(got) == pytest.approx(BASE_LR), "warm-up never overshoots"


def test_constant_stays_at_the_base_lr():
    assert lrs("constant")[WARMUP:] == pytest.approx([BASE_LR] * (STEPS - WARMUP))


def test_step_drops_by_0_3_at_each_third():
    after = lrs("step")[WARMUP:]
    assert all(b <= a for a, b in zip(after, after[1:])), "step never rises after warm-up"
    third = (STEPS - WARMUP) // 3
    assert after[0] == pytest.approx(BASE_LR)
    assert after[third - 1] == pytest.approx(BASE_LR)
    assert after[third] == pytest.approx(BASE_LR * 0.3)
    assert after[2 * third] == pytest.approx(BASE_LR * 0.09)
    assert len({round(v, 12) for v in after}) == 3, "three levels over training"


def test_cosine_decays_smoothly_to_eta_min():
    after = lrs("cosine")[WARMUP:]
    assert all(b < a for a, b in zip(after, after[1:])), "cosine decreases at every step after warm-up"
    assert after[len(after) // 2] == pytest.approx(BASE_LR * 0.505, rel=0.05), "half-way is about half"
    eta_min = BASE_LR * 0.01
    assert eta_min <= after[-1] < eta_min * 1.1


def test_onecycle_peaks_at_max_lr_and_ends_near_zero():
    got = lrs("onecycle")
    peak = max(range(STEPS), key=got.__getitem__)
    assert got[0] < BASE_LR / 10, "one-cycle starts at max_lr / 25"
    assert got[peak] == pytest.approx(BASE_LR, rel=1e-3)
    assert WARMUP - 2 <= peak <= WARMUP + 1, "the rising phase is the warm-up fraction"
    assert all(b >= a for a, b in zip(got[: peak + 1], got[1 : peak + 1]))
    assert all(b <= a for a, b in zip(got[peak:], got[peak + 1 :]))
    assert got[-1] < BASE_LR * 0.01


def test_onecycle_rises_even_without_warmup():
    got = lrs("onecycle", warmup_frac=0.0)
    assert got[0] < BASE_LR / 10
    assert max(got) == pytest.approx(BASE_LR, rel=1e-2)


def test_no_warmup_starts_at_the_base_lr():
    assert lrs("constant", warmup_frac=0.0)[0] == pytest.approx(BASE_LR)
    assert lrs("cosine", warmup_frac=0.0)[0] == pytest.approx(BASE_LR)


def test_a_single_step_run_works():
    for name in ("constant", "step", "cosine", "onecycle"):
        assert len(lrs(name, steps=1)) == 1


def test_unknown_schedule_raises():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=BASE_LR)
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'linear'"):
        build_scheduler(opt, "linear", STEPS, WARMUP_FRAC, BASE_LR)
