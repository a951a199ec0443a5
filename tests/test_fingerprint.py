"""The validation set never leaks into training: data() that changes from call to call is refused.

data() is called in the driver (the metric's validation set), in the fork server (what ranks train on)
and in `export`; an unseeded random_split gives each its own split. With random labels (true accuracy
0.5) and 80 epochs, RANDOM_LABELS's unseeded split scored 0.825 before the check.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset, random_split

from effsearch.errors import UserFileError
from effsearch.export.verify import _validation
from effsearch.fingerprint import data_fingerprint
from effsearch.userfile import load_data, load_user_file, probe

# Random labels: a model can only memorise them, so validation accuracy is near 0.5 unless it trained
# on validation samples. SPLIT is what the split is seeded with.
RANDOM_LABELS = """\
import os

import torch
from torch import nn
from torch.utils.data import TensorDataset, random_split

import effsearch


def build():
    return nn.Sequential(nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 2))


def load():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 16, generator=g)
    y = torch.randint(0, 2, (600,), generator=g)
    train, val = random_split(TensorDataset(x, y), [400, 200]SPLIT)
    return train, val


effsearch.register(model=build, data=load, name="random-labels", epochs=EPOCHS)
"""

UNSEEDED = ""
SEEDED = ", generator=torch.Generator().manual_seed(0)"
PER_PROCESS = ", generator=torch.Generator().manual_seed(os.getpid())"  # the same twice in one process only


def source(split: str, epochs: int = 1) -> str:
    return RANDOM_LABELS.replace("SPLIT", split).replace("EPOCHS", str(epochs))


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _studies(tmp_path: Path) -> int:
    db = tmp_path / "studies" / "effsearch.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        return con.execute("select count(*) from studies").fetchone()[0] if "studies" in tables else 0


# -- the fingerprint ------------------------------------------------------------------------------


def _dataset(n: int = 100) -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    return TensorDataset(torch.randn(n, 3, generator=g), torch.randint(0, 2, (n,), generator=g))


def test_a_seeded_split_has_one_fingerprint_and_an_unseeded_one_does_not() -> None:
    seeded = [data_fingerprint(tuple(random_split(_dataset(), [80, 20], generator=torch.Generator().manual_seed(0))))
              for _ in range(2)]
    assert seeded[0] == seeded[1] and seeded[0].difference(seeded[1]) is None
    unseeded = [data_fingerprint(tuple(random_split(_dataset(), [80, 20]))) for _ in range(2)]
    assert unseeded[0].difference(unseeded[1]) == "training split (the Subset's indices)"


def test_other_sizes_and_other_validation_items_are_told_apart() -> None:
    ds = _dataset()
    a = data_fingerprint((ds, ds))
    assert "split sizes" in a.difference(data_fingerprint((ds, TensorDataset(*ds[:50]))))
    # No Subset: a permutation made by hand shows in the validation items.
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(3))
    shuffled = TensorDataset(*ds[perm])
    assert a.difference(data_fingerprint((ds, shuffled))) == "validation items"


class Augmented(Dataset):
    """Training items with fresh noise on every access, as random augmentation gives."""

    def __init__(self, base: TensorDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        x, y = self.base[i]
        return x + 0.1 * torch.randn_like(x), y


def test_random_augmentation_of_training_items_is_not_a_difference() -> None:
    ds = _dataset()
    assert data_fingerprint((Augmented(ds), ds)) == data_fingerprint((Augmented(ds), ds))


# -- where data() is called -----------------------------------------------------------------------


def test_probe_refuses_an_unseeded_split_in_one_line_naming_the_file_and_the_fix(write_user_file) -> None:
    uf = load_user_file(write_user_file(source(UNSEEDED), "leaky.py"))
    with pytest.raises(UserFileError) as refused:
        probe(uf)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("leaky.py: ")
    assert "seed the split" in message and "generator=torch.Generator().manual_seed(0)" in message


def test_a_seeded_split_loads(write_user_file) -> None:
    uf = load_user_file(write_user_file(source(SEEDED)))
    train, val = load_data(uf)
    assert (len(train), len(val)) == (400, 200)
    info, _ = probe(uf)
    assert (info.n_train, info.n_val) == (400, 200)


def test_export_verification_refuses_an_unseeded_split(write_user_file) -> None:
    uf = load_user_file(write_user_file(source(UNSEEDED), "leaky.py"))
    with pytest.raises(UserFileError, match=r"^leaky\.py: .*seed the split"):
        _validation(uf)


def test_tune_refuses_an_unseeded_split_with_exit_2_one_line_and_no_study(write_user_file, run_cli, tmp_path) -> None:
    write_user_file(source(UNSEEDED, epochs=80), "leaky.py")
    proc = run_cli("tune", "leaky.py", "--trials", "1", timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: leaky.py: ") and "seed the split" in lines[0]
    assert _studies(tmp_path) == 0


def test_tune_refuses_ranks_whose_split_differs_from_the_driver_s(write_user_file, run_cli, tmp_path) -> None:
    # Seeded with the process id: two calls in the driver agree, the fork server's call does not.
    write_user_file(source(PER_PROCESS), "per_process.py")
    space = tmp_path / "space.toml"
    space.write_text('precision = "fp32"\nworld_size = 1\n')
    proc = run_cli("tune", "per_process.py", "--trials", "1", "--space", str(space), timeout=300)
    assert proc.returncode == 2, proc.stderr
    (line,) = _error_lines(proc.stderr)
    assert line.startswith("error: per_process.py: ") and "the driver and rank process 0" in line
    assert "seed the split" in line
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_with_the_split_seeded_random_labels_score_near_chance(write_user_file, run_cli, tmp_path) -> None:
    # 80 epochs memorise much of the 400 training labels: before the check, the unseeded split of this file
    # scored 0.825 (the ranks trained on most of the driver's validation samples). 200 validation samples
    # put chance at 0.5 +- 0.035.
    write_user_file(source(SEEDED, epochs=80), "fixed.py")
    space = tmp_path / "space.toml"
    space.write_text('precision = "fp32"\nworld_size = 1\nprune_ratio = 0.0\n')
    proc = run_cli("tune", "fixed.py", "--trials", "1", "--space", str(space), timeout=300)
    assert proc.returncode == 0, proc.stderr
    front = json.loads(run_cli("pareto", "--json").stdout)
    (row,) = front
    assert abs(row["metrics"]["accuracy"] - 0.5) < 0.12, row["metrics"]
