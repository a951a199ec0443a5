"""The training loader's options: defaults per device, overrides at registration, worker processes in ranks."""

from __future__ import annotations

import optuna
import pytest

import effsearch
from effsearch import record
from effsearch.config import LoaderOptions, TrainConfig
from effsearch.errors import UserFileError
from effsearch.train.loaders import loader_options
from effsearch.train.loop import RunSpec
from effsearch.train.pool import WorkerPool

# Each item notes whether a DataLoader worker process read it (a file per reading process).
READS = """\
import os
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset, get_worker_info

import effsearch

MARKS = Path({marks!r})


class Noted(Dataset):
    def __init__(self, n):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 6, generator=g)
        self.y = (self.x[:, 0] > 0).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        info = get_worker_info()
        (MARKS / f"{{'worker' if info is not None else 'rank'}}-{{os.getpid()}}").touch()
        return self.x[i], self.y[i]


def load():
    return Noted(96), Noted(32)


effsearch.register(model=lambda: nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2)), data=load,
                   name="noted", epochs=2, loader={loader!r})
"""


def test_defaults_suit_the_device_and_the_registration_overrides_them() -> None:
    assert loader_options(None, device="cpu", world_size=2, cores=2) == LoaderOptions(num_workers=0, pin_memory=False)
    gpu = loader_options(None, device="cuda", world_size=2, cores=16)
    assert (gpu.num_workers, gpu.pin_memory, gpu.persistent_workers) == (4, True, True)
    assert loader_options(None, device="cuda", world_size=8, cores=8).num_workers == 1, "at least one worker per rank"
    mine = loader_options({"num_workers": 2, "prefetch_factor": 4}, device="cpu", world_size=1, cores=2)
    assert mine.kwargs() == {"num_workers": 2, "pin_memory": False, "multiprocessing_context": "fork",
                             "persistent_workers": False, "prefetch_factor": 4}
    assert "persistent_workers" not in loader_options({"num_workers": 0}, device="cuda", world_size=1, cores=4).kwargs()


@pytest.mark.parametrize(("loader", "said"), [
    ({"workers": 2}, "unknown option(s) ['workers']"),
    ({"num_workers": -1}, "num_workers must be a whole number >= 0"),
    ({"pin_memory": "yes"}, "pin_memory must be True or False"),
    ({"num_workers": 0, "persistent_workers": True}, "set num_workers >= 1"),
    ([("num_workers", 2)], "must be a dict"),
])
def test_bad_loader_options_are_refused_at_registration(loader, said) -> None:
    with pytest.raises(UserFileError, match="register\\(loader=") as info:
        effsearch.register(model=lambda: None, data=lambda: None, loader=loader)
    assert said in str(info.value)


def test_a_rank_starts_loader_workers_and_a_study_records_the_options(write_user_file, tmp_path, run_cli) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    path = write_user_file(READS.format(marks=str(marks), loader={"num_workers": 2, "persistent_workers": True}), "noted.py")
    config = TrainConfig(batch_size=16, lr=1e-2, lr_schedule="constant", clip_norm=0.0, prune_ratio=0.0, world_size=1,
                         epochs=2, seed=0, loader=LoaderOptions(num_workers=2, persistent_workers=True))
    with WorkerPool(path, collective_timeout_s=30) as pool:
        pool.ensure(1)
        for m in marks.iterdir():  # the driver's and the fork server's reads of the data
            m.unlink()
        ranks = pool.run(RunSpec(config, str(tmp_path / "run")), 1)
    assert ranks[0].steps == 2 * 96 // 16
    workers = {m.name for m in marks.iterdir() if m.name.startswith("worker-")}
    assert len(workers) == 2, f"two worker processes of the rank read the batches, persistent over both epochs: {sorted(workers)}"

    space = tmp_path / "space.toml"
    space.write_text('world_size = 1\nprecision = "fp32"\n')
    result = run_cli("tune", str(path), "--trials", "1", "--space", str(space), timeout=300)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="noted", storage=f"sqlite:///{tmp_path / 'studies' / 'effsearch.db'}")
    lead = next(t for t in record.read_all(study) if t.lead)
    assert lead.config["loader"] == {"num_workers": 2, "pin_memory": False, "persistent_workers": True, "prefetch_factor": None}
