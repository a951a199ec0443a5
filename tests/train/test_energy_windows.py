"""train_s and energy_j cover the training steps and validations, for every meter: not building, pruning or export.

A process-scope meter is read in every rank, a machine-scope one by rank 0 alone; both over one window
per epoch (its steps and its validation: the curve's energy so far).
Fake meters that log their windows are installed as a third-party distribution (as tests/plugins/fakes
are), and a user file logs when each process builds, takes a training step (its loss) and runs the
module outside training (export, parity, FLOPs), all on the system-wide monotonic clock.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections import defaultdict
from pathlib import Path

import optuna
import pytest

from effsearch import record
from effsearch.config import TrainConfig
from effsearch.run.pipeline import export_trained
from effsearch.train.loop import RunSpec
from effsearch.train.pool import WorkerPool, available_cores

METERS = '''\
"""Energy meters that log each window (process name, start, stop on time.monotonic) and read 1 J."""

import multiprocessing
import os
import time

from effsearch.measure.energy import EnergyMeter

LOG = "EFFSEARCH_WINDOW_LOG"


class _Logging(EnergyMeter):
    measured = True

    @classmethod
    def unavailable(cls):
        return None if os.environ.get(LOG) else f"{LOG} is not set"

    def start(self):
        self._t0 = time.monotonic()

    def stop(self):
        with open(os.environ[LOG], "a") as log:
            log.write(f"meter {self.name} {multiprocessing.current_process().name} {self._t0} {time.monotonic()}\\n")
        return 1.0


class ProcessMeter(_Logging):
    name = "windowprocess"
    scope = "process"


class MachineMeter(_Logging):
    name = "windowmachine"
    scope = "machine"
'''

# Builds slowly (1 s), logs every phase. The loss is called by the training loop only (and once by the
# driver's probe); forward outside training mode is pruning's trace before the window and rank 0's
# export, parity check and FLOP count after it.
USER_FILE = '''\
import multiprocessing
import os
import time

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

import effsearch


def note(what):
    with open(os.environ["EFFSEARCH_WINDOW_LOG"], "a") as log:
        log.write(f"{what} {multiprocessing.current_process().name} {time.monotonic()}\\n")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))

    def forward(self, x):
        if not self.training:
            note("eval")
        return self.body(x)


def build():
    note("build-start")
    time.sleep(1.0)
    net = Net()
    note("build-end")
    return net


def loss(out, y):
    note("step")
    return F.cross_entropy(out, y)


def load():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 8, generator=g)
    y = (x[:, 0] > 0).long()
    return TensorDataset(x[:256], y[:256]), TensorDataset(x[256:], y[256:])


effsearch.register(model=build, data=load, loss=loss, name="windows", epochs=2)
'''


def _site(root: Path) -> Path:
    """The fake meters as an installed third-party distribution."""
    root.mkdir(parents=True)
    (root / "effsearch_windowmeters.py").write_text(METERS)
    info = root / "effsearch_windowmeters-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: effsearch-windowmeters\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[effsearch.plugins]\n"
        "windowprocess = effsearch_windowmeters:ProcessMeter\n"
        "windowmachine = effsearch_windowmeters:MachineMeter\n"
    )
    return root


def _read(log: Path) -> tuple[list[tuple[str, str, float, float]], dict[str, dict[str, list[float]]]]:
    """(meter windows: (meter, process, start, stop)), {phase: {process: [times]}}) from the log."""
    windows, phases = [], defaultdict(lambda: defaultdict(list))
    for line in log.read_text().splitlines():
        parts = line.split()
        if parts[0] == "meter":
            windows.append((parts[1], parts[2], float(parts[3]), float(parts[4])))
        else:
            phases[parts[0]][parts[1]].append(float(parts[2]))
    return windows, phases


@pytest.mark.parametrize("meter", ["windowprocess", "windowmachine"])
def test_both_meter_scopes_cover_the_training_steps_and_nothing_else(meter, run_cli, write_user_file, tmp_path) -> None:
    ranks = min(2, available_cores())
    log = tmp_path / "windows.log"
    site = _site(tmp_path / "site")
    env = {
        "PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p),
        "EFFSEARCH_WINDOW_LOG": str(log),
    }
    write_user_file(USER_FILE, "windows.py")
    space = tmp_path / "space.toml"
    space.write_text(f'precision = "fp32"\nworld_size = {ranks}\nprune_ratio = 0.5\n')
    proc = run_cli("tune", "windows.py", "--trials", "1", "--space", str(space), "--max-world-size", str(ranks),
                   "--energy-meter", meter, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr

    windows, phases = _read(log)
    rank_names = [f"effsearch-rank-{r}" for r in range(ranks)]
    in_ranks = [w for w in windows if w[1] in rank_names]
    # The process meter is read by every rank, the machine meter by rank 0 alone: once per epoch.
    expected_readers = rank_names if meter == "windowprocess" else ["effsearch-rank-0"]
    assert sorted({w[1] for w in in_ranks}) == expected_readers, windows
    assert all(sum(w[1] == r for w in in_ranks) == 2 for r in expected_readers), windows
    steps = [t for r in rank_names for t in phases["step"][r]]
    built = max(max(phases["build-end"][r]) for r in rank_names)
    last_step = max(steps)
    # Rank 0 runs the module outside training to validate after each epoch (within the window), then to
    # export, check parity and count FLOPs (after it). The validation set is one batch: one call each.
    after = sorted(t for t in phases["eval"]["effsearch-rank-0"] if t > last_step)
    validated, exported = after[0], after[1]
    for process in expected_readers:
        mine = sorted((start, stop) for _, p, start, stop in in_ranks if p == process)
        start, stop = mine[0][0], mine[-1][1]
        covered = steps if meter == "windowmachine" else phases["step"][process]
        assert start >= built, "the window opened before every rank had built its model"
        outside = [t for t in covered if not any(a <= t <= b for a, b in mine)]
        assert not outside, (outside, mine)
        assert stop >= validated, "the last epoch's validation lies outside the window"
        assert stop <= exported, "the window includes rank 0's export"

    (row,) = json.loads(run_cli("pareto", "--json", env=env).stdout)
    m = row["metrics"]
    assert m["energy_source"] == meter
    assert m["energy_j"] == pytest.approx(len(in_ranks) * 1.0)  # each reading once
    # The curve's energy after each epoch is every reader's so far, summed (each reading is 1 J here).
    study = optuna.load_study(study_name="windows", storage=f"sqlite:///{tmp_path / 'studies' / 'effsearch.db'}")
    (lead,) = [t for t in record.read_all(study) if t.lead]
    readers = len(expected_readers)
    assert [(p["epoch"], p["energy_j"]) for p in lead.curve] == [(1, readers * 1.0), (2, readers * 2.0)]
    # train_s is the window: well below the 1 s the model factory sleeps.
    longest = max(sum(w[3] - w[2] for w in in_ranks if w[1] == r) for r in expected_readers)
    assert m["train_s"] == pytest.approx(longest, abs=0.05)
    assert m["train_s"] < 1.0


# -- train_s without a meter, in-process pool (fast) ------------------------------------------------

SLOW_BUILD = """\
    import time

    import torch
    from torch import nn
    from torch.utils.data import TensorDataset

    import effsearch


    def build():
        time.sleep(1.0)
        return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


    def load():
        g = torch.Generator().manual_seed(0)
        x = torch.randn(192, 8, generator=g)
        y = (x[:, 0] > 0).long()
        return TensorDataset(x[:128], y[:128]), TensorDataset(x[128:], y[128:])


    effsearch.register(model=build, data=load, name="slow-build", epochs=2)
"""


@pytest.mark.parametrize("prune_when", ["start", "finetune"])
def test_train_s_leaves_out_a_slow_model_factory(prune_when, write_user_file, tmp_path) -> None:
    path = write_user_file(textwrap.dedent(SLOW_BUILD), "slow_build.py")
    config = TrainConfig(batch_size=32, lr=3e-3, lr_schedule="cosine", clip_norm=0.0, prune_ratio=0.5,
                         world_size=1, epochs=2, seed=0, prune_when=prune_when)
    with WorkerPool(path, collective_timeout_s=30) as pool:
        (rank,) = pool.run(RunSpec(config, str(tmp_path / "out"), finish=export_trained), 1)
    assert rank.build_s >= 1.0
    assert rank.train_s < 0.5, rank
    assert rank.steps == 2 * 4  # 128 samples in batches of 32, both epochs counted
