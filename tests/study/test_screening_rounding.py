"""Screening reads the graph a configuration builds, with the study's rounding, and anchors latency in one window."""

from __future__ import annotations

from pathlib import Path

from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState, create_trial

import effsearch.study.screening as screening
from effsearch import record
from effsearch.config import TrainConfig
from effsearch.constraints import Constraints
from effsearch.study.screening import Screen
from effsearch.userfile import load_user_file

CNN_1D = Path(__file__).resolve().parents[1] / "userfiles" / "cnn_1d.py"
# What one precision measured untrained: the config at 0.1 ms, half the dense model's 0.2 ms in that window.
FIGURES = {"fp32": {"latency_ms": 0.1, "latency_p90_ms": 0.12, "latency_ratio": 0.5, "latency_ratio_lo": 0.45,
                    "latency_ratio_hi": 0.55, "dense_latency_ms": 0.2, "size_bytes": 1000, "flops": 10, "param_count": 10}}


def _config(ratio: float, importance: str = "l2") -> TrainConfig:
    return TrainConfig(batch_size=32, lr=3e-3, lr_schedule="cosine", clip_norm=0.0, prune_ratio=ratio, world_size=1,
                       epochs=1, seed=0, prune_importance=importance)


def _screen(study: optuna.Study, limits: Constraints, uf: Any = None) -> Screen:
    measurer = SimpleNamespace(threads=1, calibration=[], sample=None, providers=None, latency_batch=1)
    datasets = uf.registration.data() if uf is not None else None
    return Screen(study=study, uf=uf, datasets=datasets, measurer=measurer, limits=limits)


@pytest.fixture
def measured(monkeypatch) -> list[dict[str, Any]]:
    """Stands in for measuring untrained figures; lists each call's configuration and keyword arguments."""
    calls: list[dict[str, Any]] = []

    def fake(uf, datasets, config, precisions, **kw):
        calls.append({"ratio": config.prune_ratio, **kw})
        return {p: SimpleNamespace(to_dict=lambda p=p: dict(FIGURES["fp32"])) for p in precisions}

    monkeypatch.setattr(screening, "measure_untrained", fake)
    return calls


def test_configurations_that_build_one_graph_share_its_untrained_figures(measured, monkeypatch) -> None:
    monkeypatch.setenv("EFFSEARCH_CHANNEL_MULTIPLE", "16")
    uf = load_user_file(CNN_1D)
    screen = _screen(optuna.create_study(), Constraints(), uf)
    # 0.3 and 0.4 keep 22 and 19 of 32 channels, both rounded to 16; l1 keeps other channels, as many.
    for config in (_config(0.3), _config(0.4), _config(0.3, "l1")):
        assert screen.figures(config, ("fp32",))["fp32"]["latency_ratio"] == 0.5
    assert [c["ratio"] for c in measured] == [0.3], "one graph, measured once"
    screen.figures(_config(0.8), ("fp32",))  # keeps 6: rounded to 16 as well
    screen.figures(_config(0.0), ("fp32",))  # the dense graph
    assert [c["ratio"] for c in measured] == [0.3, 0.0]


def test_the_studys_recorded_multiple_overrides_this_hosts(measured, monkeypatch) -> None:
    monkeypatch.setenv("EFFSEARCH_CHANNEL_MULTIPLE", "8")  # this host: 0.3 keeps 24 of 32 channels, 0.5 keeps 16
    uf = load_user_file(CNN_1D)
    study = optuna.create_study()
    record.write_meta(study, record.StudyMeta(channel_multiple=16))  # the host that created the study: both keep 16
    screen = _screen(study, Constraints(), uf)
    screen.figures(_config(0.3), ("fp32",))
    screen.figures(_config(0.5), ("fp32",))
    assert len(measured) == 1 and measured[0].get("multiple") == 16, measured


def test_the_ranks_prune_with_the_multiple_the_run_carries(monkeypatch, tmp_path) -> None:
    from effsearch.run.untrained import build_pruned
    from effsearch.train.loop import RunSpec
    from effsearch.train.pool import WorkerPool

    monkeypatch.setenv("EFFSEARCH_CHANNEL_MULTIPLE", "8")
    path = CNN_1D
    with WorkerPool(path, collective_timeout_s=30) as pool:
        (rank,) = pool.run(RunSpec(_config(0.3), str(tmp_path / "out"), channel_multiple=16), 1)
    _, driver = build_pruned(load_user_file(path), load_user_file(path).registration.data()[0], 0.3, "l2", 0, 16)
    assert rank.prune.round_to == 16 and rank.prune.params_after == driver.params_after, (rank.prune, driver)


@pytest.mark.parametrize("off", [0.5, 2.0])
def test_a_baseline_latency_off_by_2x_does_not_change_the_verdict(off) -> None:
    study = optuna.create_study()
    limits = Constraints(max_latency_ms=0.12)  # the config's 0.1 ms (0.5x the 0.2 ms dense timed with it) meets it
    alone = _screen(study, limits).verdict(FIGURES)
    # The dense baseline's once-only figure, taken at another moment, `off` times the dense model's in the window.
    study.add_trial(create_trial(
        state=TrialState.COMPLETE, value=0.0,
        user_attrs=record.TrialRecord(lead=True, baseline=True, metrics={"latency_ms": 0.2 * off}).user_attrs(),
    ))
    screen = _screen(study, limits)
    assert screen.verdict(FIGURES) == alone
    assert alone.reason is None, "0.1 ms meets 0.12 ms"
    tight = _screen(study, Constraints(max_latency_ms=0.05))
    assert tight.verdict(FIGURES).reason == "screened: latency ≥ 0.1 ms > 0.05 ms for every precision"
