"""`--launcher ray`: two workers as tasks of a local Ray cluster the tests start (once for the module), and
one task's worker killed mid-run."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import pytest
from optuna.trial import TrialState

from effsearch import record
from effsearch.launch import StudyWatch, launcher_for, start, wait, worker_argv
from effsearch.study import runs_counted

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'effsearch[ray]'")

TINY = Path(__file__).resolve().parents[1] / "userfiles" / "tiny_mlp.py"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_two_ray_tasks_finish_one_study(local_ray, tmp_path: Path) -> None:
    from effsearch.api import load, prepare

    space = tmp_path / "space.toml"
    space.write_text('world_size = 1\nbatch_size = 128\n\n[precision]\nchoices = ["fp32"]\n')
    options = dict(trials=3, storage=f"sqlite:///{tmp_path / 'effsearch.db'}", epochs=1, space=space, early_stop=False,
                   artifacts=tmp_path / "studies")
    job = prepare(TINY, **options)
    launcher = launcher_for("ray", ["cpus_per_worker=1"])
    share = launcher.share(2)
    seen: list[int] = []
    workers = start(launcher, 2, worker_argv(TINY, options, job.settings, share), share, job.settings.storage_url)
    ended = wait(workers, StudyWatch(job.settings.study_name, job.settings.storage_url), on_progress=lambda runs, _: seen.append(runs))
    assert ended.ok and set(ended.exit_codes.values()) == {0}, ended
    study = load(job.settings.study_name, job.settings.storage_url).study
    assert len(record.read_workers(study)) == 2
    assert runs_counted(study) >= 3 and ended.runs == runs_counted(study)
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert seen == sorted(seen), "the progress only goes up"


def test_a_task_whose_worker_is_killed_mid_run_loses_its_run_to_the_lease_and_another_task_finishes_the_study(
    local_ray, tmp_path: Path, space: Path, sleepy, replaced
) -> None:
    from effsearch.api import load, prepare

    options = dict(trials=4, storage=f"sqlite:///{tmp_path / 'effsearch.db'}", epochs=1, space=space, early_stop=False,
                   artifacts=tmp_path / "studies", heartbeat_interval=1, heartbeat_grace=3)
    job = prepare(sleepy.file, **options)
    launcher = launcher_for("ray", ["cpus_per_worker=1"])
    share = launcher.share(2)
    share = dataclasses.replace(share, env={**share.env, **sleepy.env})  # the tasks' workers sleep in the second run
    workers = start(launcher, 2, worker_argv(sleepy.file, options, job.settings, share), share, job.settings.storage_url)
    killed: list[int] = []

    def kill_the_sleeping_worker(runs: int, running: int) -> None:
        # The task's own process (Ray's) stays: its worker is what a lost node or an OOM kill takes.
        if not killed and (sleepy.marks / "slow").exists():
            killed.append(sleepy.worker_of(sleepy.slow_pid()))
            os.kill(killed[0], signal.SIGKILL)

    ended = wait(workers, StudyWatch(job.settings.study_name, job.settings.storage_url), on_progress=kill_the_sleeping_worker, poll_s=0.2)

    assert killed, "the second run never slept"
    assert sorted(ended.exit_codes.values()) == [-signal.SIGKILL, 0], ended
    study = load(job.settings.study_name, job.settings.storage_url).study
    replaced(study, killed[0])
