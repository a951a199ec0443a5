"""Rank 0's validation after each epoch may outlast the collective timeout: the other ranks wait for it."""

from __future__ import annotations


from effsearch.config import TrainConfig
from effsearch.train.loop import RunSpec
from effsearch.train.pool import WorkerPool

# The tiny MLP of tests/userfiles, whose validation (its forward in eval mode, with the process group up:
# rank 0 validating after an epoch) takes SLOW_VALIDATION_S.
SLOW_EVAL = """\
    import time

    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.utils.data import TensorDataset

    import effsearch


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(30, 16), nn.ReLU(), nn.Linear(16, 2))

        def forward(self, x):
            if not self.training and dist.is_initialized():
                time.sleep({seconds})
            return self.body(x)


    def load():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(192, 30, generator=g)
        y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
        return TensorDataset(x[:128], y[:128]), TensorDataset(x[128:], y[128:])


    effsearch.register(model=Net, data=load, name="slow-eval", epochs=1)
"""

COLLECTIVE_TIMEOUT_S = 2.0
SLOW_VALIDATION_S = 3.0


def test_a_validation_longer_than_the_collective_timeout_does_not_fail_a_two_rank_run(write_user_file, tmp_path) -> None:
    path = write_user_file(SLOW_EVAL.format(seconds=SLOW_VALIDATION_S), "slow_eval.py")
    config = TrainConfig(batch_size=32, lr=3e-3, lr_schedule="cosine", clip_norm=0.0, prune_ratio=0.0, world_size=2, epochs=1, seed=0)
    spec = RunSpec(config, str(tmp_path / "out"), collective_timeout_s=COLLECTIVE_TIMEOUT_S)
    with WorkerPool(path, collective_timeout_s=COLLECTIVE_TIMEOUT_S) as pool:
        ranks = pool.run(spec, 2)
    assert [r.rank for r in ranks] == [0, 1]
    # Both ranks took the epoch's point, the validation's time inside it.
    for r in ranks:
        assert [p["epoch"] for p in r.curve] == [1]
        assert r.train_s >= SLOW_VALIDATION_S
    assert 0.0 <= ranks[0].curve[0]["metric"] <= 1.0
