"""Rounding pruned channel counts to the runtime's multiple never undoes pruning, and says what it built."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from effsearch.compress.prune import count_params, prune

X = torch.randn(2, 4, 16)
RATIOS = (0.05, 0.1, 0.3, 0.5, 0.6, 0.75, 0.9, 0.95)


def cnn(width: int = 32) -> nn.Module:
    """A 1-D CNN with two convolutions of `width` channels before its output layer."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(4, width, 3, padding=1), nn.ReLU(), nn.Conv1d(width, width, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(width, 5),
    )


def widths(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv1d)]


@pytest.mark.parametrize("multiple", [8, 16])
def test_every_ratio_that_asks_for_pruning_prunes_and_achieved_is_what_was_built(monkeypatch, multiple) -> None:
    monkeypatch.setenv("EFFSEARCH_CHANNEL_MULTIPLE", str(multiple))
    for ratio in RATIOS:
        model = cnn()
        before = count_params(model)
        report = prune(model, X, ratio)
        built = widths(model)
        assert all(w < 32 and w % multiple == 0 for w in built), (ratio, built)
        assert report.achieved > 0.0 and report.achieved == pytest.approx(1 - count_params(model) / before), ratio
        assert report.round_to == multiple


def test_prune_075_at_a_multiple_of_16_builds_fewer_channels_than_dense(monkeypatch) -> None:
    monkeypatch.setenv("EFFSEARCH_CHANNEL_MULTIPLE", "16")
    model = cnn()
    report = prune(model, X, 0.75)
    assert widths(model) == [16, 16], "8 of 32 asked: the smallest multiple of 16, not the dense 32"
    assert report.params_after < report.params_before


def test_a_group_no_wider_than_the_multiple_is_pruned_unrounded(monkeypatch) -> None:
    monkeypatch.setenv("EFFSEARCH_CHANNEL_MULTIPLE", "8")
    model = cnn(width=6)
    prune(model, X, 0.5)
    assert widths(model) == [3, 3], "no multiple of 8 lies below 6: rounding could only have left it whole"


def test_kept_counts_round_to_the_nearest_multiple_within_the_group() -> None:
    from effsearch.compress.prune.common import kept_channels

    # (channels, asked to keep, multiple) -> kept
    cases = {(32, 22, 8): 24, (32, 19, 8): 16, (32, 30, 8): 24, (32, 8, 16): 16, (32, 28, 16): 16, (20, 18, 8): 16,
             (64, 3, 8): 8, (6, 3, 8): 3, (32, 22, 1): 22, (32, 32, 8): 32}
    assert {case: kept_channels(*case) for case in cases} == cases


def test_the_multiple_given_overrides_this_hosts(monkeypatch) -> None:
    monkeypatch.setenv("EFFSEARCH_CHANNEL_MULTIPLE", "8")
    model = cnn()
    report = prune(model, X, 0.3, multiple=16)
    assert widths(model) == [16, 16] and report.round_to == 16  # this host's 8 would have kept 24
