"""`effsearch tune FILE --workers N`: the launch refused in one line where it cannot work, and the worker's
command line it builds."""

from __future__ import annotations

from pathlib import Path

import pytest

from effsearch.errors import StudyError
from effsearch.launch import Share, check_storage, launcher_for, worker_argv
from effsearch.train.pool import available_cores

HERE = Path(__file__).resolve().parent
TINY_FILE = HERE.parent / "userfiles" / "tiny_mlp.py"


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_more_workers_than_cores_is_refused_in_one_line_exit_2(run_cli, tmp_path: Path) -> None:
    n = available_cores() + 1
    r = run_cli("tune", str(TINY_FILE), "--workers", str(n), "--trials", "2")
    assert r.returncode == 2, r.stderr
    line = one_line_error(r.stderr)
    assert f"--workers {n}" in line and f"--workers {n - 1} or fewer" in line
    assert not (tmp_path / "studies").exists() or not any((tmp_path / "studies").glob("*.db"))


@pytest.mark.parametrize(("launcher", "options"), [("slurm", []), ("ray", ["address=ray://head:10001"])])
def test_workers_that_can_leave_this_machine_refuse_sqlite_naming_the_fix(launcher: str, options: list[str]) -> None:
    with pytest.raises(StudyError, match="postgresql://.*grpc://") as caught:
        check_storage("sqlite:////tmp/x.db", launcher_for(launcher, options))
    assert f"--launcher {launcher}" in str(caught.value)
    check_storage("postgresql+psycopg://u@db/effsearch", launcher_for(launcher, options))
    check_storage("sqlite:////tmp/x.db", launcher_for("local"))  # local workers share this machine's file
    check_storage("sqlite:////tmp/x.db", launcher_for("slurm", ["cluster=local"]))  # submitit's jobs run here
    check_storage("sqlite:////tmp/x.db", launcher_for("ray"))  # a Ray cluster of this machine


def test_slurm_refuses_sqlite_from_the_command_line_exit_2(run_cli) -> None:
    r = run_cli("tune", str(TINY_FILE), "--workers", "2", "--launcher", "slurm", "--trials", "2")
    assert r.returncode == 2, r.stderr
    assert "PostgreSQL" in one_line_error(r.stderr) or "postgresql://" in r.stderr


def test_unknown_launcher_and_options_are_refused_in_one_line() -> None:
    with pytest.raises(StudyError, match="expected one of local, slurm, ray"):
        launcher_for("kubernetes")
    with pytest.raises(StudyError, match="partition=VALUE"):
        launcher_for("slurm", ["queue=gpu"])
    with pytest.raises(StudyError, match="expected a whole number"):
        launcher_for("slurm", ["time=soon"])
    with pytest.raises(StudyError, match="takes folder=VALUE"):
        launcher_for("local", ["partition=gpu"])


def test_local_share_splits_the_cores() -> None:
    cores = available_cores()
    share = launcher_for("local").share(1)
    assert share.cpus == cores and share.max_world_size == cores or share.gpus
    if cores >= 2 and not share.gpus:
        assert launcher_for("local").share(2).cpus == cores // 2


def test_each_worker_runs_the_same_tune_on_the_launch_study(tmp_path: Path) -> None:
    from effsearch.api import prepare

    space = tmp_path / "space.toml"
    space.write_text('world_size = 1\n')
    options = dict(trials=3, study=None, storage=f"sqlite:///{tmp_path / 's.db'}", seed=5, space=space, early_stop=False,
                   max_world_size=None, heartbeat_interval=1, artifacts=None)
    job = prepare(TINY_FILE, **options)
    argv = worker_argv(TINY_FILE, options, job.settings, Share(cpus=2))
    assert argv[:2] == ["tune", str(TINY_FILE)]
    pairs = {a: b for a, b in zip(argv, argv[1:]) if a.startswith("--") and not b.startswith("--")}
    assert pairs["--study"] == "tiny-mlp" and pairs["--storage"] == f"sqlite:///{(tmp_path / 's.db').resolve()}"
    assert pairs["--trials"] == "3" and pairs["--seed"] == "5" and pairs["--max-world-size"] == "2"
    assert pairs["--space"] == str(space.resolve()) and "--no-early-stop" in argv
    assert pairs["--artifacts"] == str(tmp_path.resolve())  # the default, beside the SQLite file, named for every worker
    capped = worker_argv(TINY_FILE, {**options, "max_world_size": 1}, job.settings, Share(cpus=2))
    assert capped[capped.index("--max-world-size") + 1] == "1"
