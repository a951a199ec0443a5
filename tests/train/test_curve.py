"""Each run's curve (a validation after every epoch) and the early stop, on the ranks themselves."""

from __future__ import annotations

from pathlib import Path

from effsearch.config import TrainConfig
from effsearch.run.pipeline import export_trained
from effsearch.train.loop import RunSpec
from effsearch.train.pool import WorkerPool, available_cores
from effsearch.train.stopping import Point, StopRule

TINY = Path(__file__).resolve().parents[1] / "userfiles" / "tiny_mlp.py"


def beaten(epochs: int, first_epoch: int = 1) -> StopRule:
    """A rule that stops at every epoch it may: a reference no accuracy can reach, at every epoch."""
    best = (Point(run=1, metric=10.0, energy_j=0.0, figures=()),)
    return StopRule("accuracy", True, (), ((),), {k: best for k in range(1, epochs + 1)}, energy=False, epochs=epochs,
                    first_epoch=first_epoch)


def config(**kw) -> TrainConfig:
    base = dict(batch_size=32, lr=3e-3, lr_schedule="cosine", clip_norm=0.0, prune_ratio=0.0, world_size=1, epochs=3, seed=0)
    return TrainConfig(**{**base, **kw})


def test_every_epoch_records_a_validation_point_and_a_run_without_a_rule_trains_in_full(tmp_path) -> None:
    with WorkerPool(TINY, collective_timeout_s=30) as pool:
        (rank,) = pool.run(RunSpec(config(), str(tmp_path / "out"), finish=export_trained), 1)
    assert [p["epoch"] for p in rank.curve] == [1, 2, 3]
    assert all(0.0 <= p["metric"] <= 1.0 for p in rank.curve)
    seconds = [p["train_s"] for p in rank.curve]
    assert seconds == sorted(seconds) and seconds[-1] <= rank.train_s
    assert rank.stopped is None and rank.artifact is not None


def test_a_stopped_run_ends_on_every_rank_at_once_and_exports_nothing(tmp_path) -> None:
    world = min(2, available_cores())
    cfg = config(world_size=world, epochs=4)
    with WorkerPool(TINY, collective_timeout_s=30) as pool:
        ranks = pool.run(RunSpec(cfg, str(tmp_path / "out"), finish=export_trained, stop=beaten(4)), world)
    assert len(ranks) == world
    for r in ranks:
        assert r.stopped is not None and "after epoch 1 of 4" in r.stopped
        assert [p["epoch"] for p in r.curve] == [1]
        assert r.steps == 4  # one epoch: 128 samples in global batches of 32
    assert ranks[0].artifact is None and not (tmp_path / "out").exists()


def test_fine_tuning_runs_are_not_stopped_before_the_pruning_epoch_nor_after_their_last(tmp_path) -> None:
    # 6 epochs with prune_when = "finetune": 4 dense, prune, 2 fine-tuning; the first it may stop after is 5.
    cfg = config(epochs=6, prune_ratio=0.5, prune_when="finetune")
    with WorkerPool(TINY, collective_timeout_s=30) as pool:
        (rank,) = pool.run(RunSpec(cfg, str(tmp_path / "out"), finish=export_trained, stop=beaten(6)), 1)
        # A run whose first epoch it may stop after is its last trains in full and is exported.
        (last,) = pool.run(RunSpec(config(epochs=2), str(tmp_path / "out2"), finish=export_trained, stop=beaten(2, first_epoch=2)), 1)
    assert [p["epoch"] for p in rank.curve] == [1, 2, 3, 4, 5]
    assert "after epoch 5 of 6" in rank.stopped
    assert last.stopped is None and len(last.curve) == 2 and last.artifact is not None
