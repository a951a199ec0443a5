"""`--launcher slurm`: the batch script submitit would submit, a launch through submitit's local executor
(the same code path, without a cluster; it ignores the SLURM parameters), and one of its jobs' workers
killed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from effsearch import record
from effsearch.launch import launcher_for
from effsearch.study import runs_counted

pytest.importorskip("submitit", reason="submitit is not installed: pip install 'effsearch[slurm]'")

TINY = Path(__file__).resolve().parents[1] / "userfiles" / "tiny_mlp.py"


def test_the_batch_script_asks_for_each_workers_share_and_warns_it_before_the_end(tmp_path: Path, monkeypatch) -> None:
    import submitit.slurm.slurm

    # submitit's SLURM executor checks for `srun` when made; rendering its script needs no cluster.
    monkeypatch.setattr(submitit.slurm.slurm.SlurmExecutor, "affinity", classmethod(lambda cls: 2))
    options = ["partition=gpu", "time=30", "cpus_per_worker=4", "gpus_per_worker=1", "mem=16G", f"folder={tmp_path}"]
    executor = launcher_for("slurm", options).executor(3)._executor
    executor.parameters["map_count"] = 3  # what submitit sets when the batch of 3 jobs is submitted as one array
    script = executor._make_submission_file_text("python -m effsearch tune", "uid")
    lines = set(script.splitlines())
    for expected in (
        "#SBATCH --partition=gpu", "#SBATCH --time=30", "#SBATCH --cpus-per-task=4", "#SBATCH --gpus-per-node=1",
        "#SBATCH --mem=16G", "#SBATCH --array=0-2%3", "#SBATCH --signal=USR2@120", "#SBATCH --ntasks-per-node=1",
        "#SBATCH --job-name=effsearch",
    ):
        assert expected in lines, script
    assert str(tmp_path) in script  # the jobs' logs


def test_two_workers_through_submitits_local_executor_finish_the_study(run_cli, tmp_path: Path) -> None:
    space = tmp_path / "space.toml"
    space.write_text('world_size = 1\nbatch_size = 128\n\n[precision]\nchoices = ["fp32"]\n')
    r = run_cli(
        "tune", str(TINY), "--trials", "3", "--epochs", "1", "--space", str(space), "--no-early-stop", "--workers", "2",
        "--launcher", "slurm", "--launcher-option", "cluster=local", "--launcher-option", f"folder={tmp_path / 'jobs'}",
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    assert "by 2 slurm workers" in r.stderr and "job" in r.stderr
    study = optuna.load_study(study_name="tiny-mlp", storage=f"sqlite:///{tmp_path / 'studies' / 'effsearch.db'}")
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert len(record.read_workers(study)) == 2, "both jobs joined the one study"
    assert runs_counted(study) >= 3
    assert any((tmp_path / "jobs").glob("*_log.err"))


def test_a_job_whose_worker_is_killed_mid_run_loses_its_run_to_the_lease_and_another_job_finishes_the_study(
    tmp_path: Path, space: Path, sleepy, launched: list[subprocess.Popen], replaced
) -> None:
    launch = subprocess.Popen(
        [sys.executable, "-m", "effsearch", "tune", str(sleepy.file), "--trials", "4", "--epochs", "1", "--space", str(space),
         "--no-early-stop", "--heartbeat-interval", "1", "--heartbeat-grace", "3", "--workers", "2", "--launcher", "slurm",
         "--launcher-option", "cluster=local", "--launcher-option", f"folder={tmp_path / 'jobs'}"],
        cwd=tmp_path, env={**os.environ, **sleepy.env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    launched.append(launch)
    # The job's own process (submitit's) stays: its worker is what a lost node or an OOM kill takes.
    pid = sleepy.worker_of(sleepy.slow_pid(lambda: launch.poll() is None))
    os.kill(pid, signal.SIGKILL)
    _, err = launch.communicate(timeout=120)

    assert launch.returncode == 0, err
    assert "was killed by SIGKILL" in err, err
    study = optuna.load_study(study_name="sleepy-mlp", storage=f"sqlite:///{tmp_path / 'studies' / 'effsearch.db'}")
    replaced(study, pid)
