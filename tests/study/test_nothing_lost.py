"""Nothing lost, nothing stuck: limits wait for the baseline, dead drivers are seen at once, every failure
keeps its reason, and one failure does not ban a precision or pruning for good."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from effsearch import record
from effsearch.errors import TrialError
from effsearch.study.give_up import GiveUp

USERFILES = Path(__file__).resolve().parents[1] / "userfiles"
FAULTY = USERFILES / "faulty_mlp.py"
HELD = USERFILES / "held_mlp.py"
STUDY = "faulty-mlp"
SPACE = 'world_size = 1\nbatch_size = 128\n\n[precision]\nchoices = ["fp32"]\n'


def _start(cwd: Path, *args: str, env: dict[str, str], tag: str) -> subprocess.Popen:
    out, err = open(cwd / f"{tag}.out", "w"), open(cwd / f"{tag}.err", "w")
    return subprocess.Popen(
        [sys.executable, "-m", "effsearch", *args], cwd=cwd, stdout=out, stderr=err,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env}, start_new_session=True,
    )


def _run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "effsearch", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def _wait_for(what, timeout: float, label: str) -> None:
    t0 = time.monotonic()
    while not what():
        if time.monotonic() - t0 > timeout:
            pytest.fail(f"no {label} within {timeout:.0f} s")
        time.sleep(0.1)


def _study(cwd: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{cwd / 'studies' / 'effsearch.db'}")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "space.toml").write_text(SPACE)
    (tmp_path / "marks").mkdir()
    return tmp_path


def _tune(folder: Path, trials: int, *extra: str) -> tuple[str, ...]:
    return ("tune", str(FAULTY), "--trials", str(trials), "--epochs", "1", "--space", str(folder / "space.toml"), *extra)


def test_a_drop_limit_waits_for_a_baseline_that_another_worker_is_still_training(folder: Path) -> None:
    marks = folder / "marks"
    (marks / "HOLD").touch()  # the baseline's first training step waits until the file is gone
    env = {"EFFSEARCH_FAULT_DIR": str(marks)}
    args = ("tune", str(HELD), "--trials", "3", "--epochs", "1", "--space", str(folder / "space.toml"),
            "--max-metric-drop", "1.0")  # accuracy never drops by 1.0: every trial meets it
    first = _start(folder, *args, env=env, tag="first")
    second = None
    try:
        _wait_for((marks / "held").exists, 120, "baseline inside training")
        second = _start(folder, *args, env=env, tag="second")
        # The second worker trains a run of its own, then waits to judge it: the baseline is held meanwhile.
        _wait_for(lambda: "waiting for the baseline run to finish" in (folder / "second.err").read_text(), 120,
                  "second worker waiting for the baseline")
        assert second.poll() is None and first.poll() is None
        (marks / "HOLD").unlink()
        assert second.wait(timeout=240) == 0, (folder / "second.err").read_text()
        assert first.wait(timeout=240) == 0, (folder / "first.err").read_text()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    study = optuna.load_study(study_name="held-mlp", storage=f"sqlite:///{folder / 'studies' / 'effsearch.db'}")
    trials = record.read_all(study, states=(TrialState.COMPLETE,))
    baseline = next(t for t in trials if t.baseline)
    others = [t for t in trials if not t.baseline]
    assert others, "the second worker ran trials of its own while the baseline trained"
    infeasible = [(t.number, t.constraints) for t in trials if t.infeasible]
    assert infeasible == [], f"trials judged before the baseline's metric was known: {infeasible}"
    assert baseline.record.worker["pid"] == first.pid
    assert second.pid in {t.record.worker["pid"] for t in others if t.record.lead}


def test_a_killed_driver_is_seen_at_once_by_the_next_tune_and_by_read_only_commands(folder: Path) -> None:
    marks = folder / "marks"
    (marks / "HANG").touch()
    env = {"EFFSEARCH_FAULT": "hang_if_marked", "EFFSEARCH_FAULT_DIR": str(marks)}
    driver = _start(folder, *_tune(folder, 1), env=env, tag="driver")
    try:
        _wait_for((marks / "hanging").exists, 120, "run inside training")
    finally:
        os.kill(driver.pid, signal.SIGKILL)  # the driver only; its ranks follow it
        driver.wait(timeout=10)
    (marks / "HANG").unlink()
    db = folder / "studies" / "effsearch.db"
    (lost,) = [t for t in _study(folder).get_trials() if t.state == TrialState.RUNNING]

    # Read-only commands show it as lost and write nothing (the default heartbeat grace, 30 s, has not passed).
    before = db.read_bytes()
    listing = _run(folder, "studies")
    assert listing.returncode == 0, listing.stderr
    cells = next([c.strip() for c in line.split("│")[1:-1]] for line in listing.stdout.splitlines() if STUDY in line)
    assert cells[4:6] == ["1", "0"], f"failed 1, running 0: {listing.stdout}"
    report = _run(folder, "pareto")
    assert "worker lost" in report.stdout, report.stdout
    assert db.read_bytes() == before, "a read-only command wrote to the storage"
    assert _study(folder).trials[lost.number].state == TrialState.RUNNING

    # The budget (1 run) looked met while the dead run counted; the next tune fails it and runs it again.
    again = _run(folder, *_tune(folder, 1), env=env)
    assert again.returncode == 0, again.stderr
    trials = {t.number: t for t in _study(folder).get_trials()}
    assert trials[lost.number].state == TrialState.FAIL
    assert trials[lost.number].user_attrs["fail_reason"].startswith(f"worker lost: process {driver.pid} ")
    (retry,) = [t for t in trials.values() if t.system_attrs.get("failed_trial") == lost.number]
    assert retry.state == TrialState.COMPLETE and retry.params == lost.params and retry.user_attrs.get("baseline")
    assert not [t for t in trials.values() if t.state == TrialState.RUNNING]
    numbered = {t.number: t.run for t in record.read_all(_study(folder)) if t.lead}
    assert numbered == {lost.number: 1, retry.number: 2}, "the lost run keeps its number, its re-run gets the next"


def test_any_error_of_a_run_is_recorded_with_its_reason_and_fails_only_that_run(tmp_path: Path, monkeypatch) -> None:
    from effsearch.space import default_space
    from effsearch.study import Instruments, TuneSettings, Tuner
    from effsearch.userfile import load_user_file

    uf = load_user_file(USERFILES / "tiny_mlp.py")
    settings = TuneSettings(
        study_name="s", storage_url="sqlite:///unused.db", trials=1, space=default_space(1),
        objectives=("accuracy",), directions=("maximize",), epochs=1, artifacts=tmp_path,
    )
    study = optuna.create_study(directions=["maximize"])  # the Tuner takes an open study: here in memory
    tuner = Tuner(study, uf, settings, tools=Instruments.choose())

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tuner, "_train", disk_full)
    trial = study.ask()
    no_screen = SimpleNamespace(figures=lambda config, precisions: {}, active=False, datasets=None, channel_multiple=None)
    with pytest.raises(TrialError, match="OSError: .*No space left on device"):
        tuner._objective(trial, pool=None, measurer=None, screen=no_screen)
    study.tell(trial, state=TrialState.FAIL)
    (t,) = record.read_all(study)
    assert t.reason == "OSError: [Errno 28] No space left on device"
    assert t.is_training_run, "a run that failed for a reason of its own counts; only a lost one is run again"


def test_a_value_is_given_up_only_after_failing_with_two_different_settings() -> None:
    study = optuna.create_study(directions=["maximize"])
    give_up = GiveUp(study)
    cfg_a, cfg_b = json.dumps({"lr": 0.01}), json.dumps({"lr": 0.001})
    give_up.failed("fp16", "conversion failed", where=cfg_a, trial=3)
    give_up.failed("fp16", "conversion failed", where=cfg_a, trial=5)  # the same configuration again
    assert record.read_given_up(study) == {}
    assert "fp16" in give_up.precisions(_space(), sampled=None)
    give_up.failed("fp16", "conversion failed", where=cfg_b, trial=8)
    assert record.read_given_up(study) == {"fp16": "failed in trials 3 and 8 with different settings: conversion failed"}
    assert "fp16" not in give_up.precisions(_space(), sampled=None)
    assert "fp16" in give_up.precisions(_space(), sampled="fp16"), "a sampled precision is still made"

    give_up.failed("prune_ratio", "pruning failed", where="prune_ratio 0.3", trial=9)
    assert not _space().dims["prune_ratio"].fixed and not give_up.space(_space()).dims["prune_ratio"].fixed
    give_up.failed("prune_ratio", "pruning failed", where="prune_ratio 0.5", trial=12)
    pruning = give_up.space(_space()).dims["prune_ratio"]
    assert pruning.fixed and pruning.allows(0.0) and not pruning.allows(0.3)


def test_the_report_says_what_was_given_up_and_why() -> None:
    from effsearch.report.info import build_report

    study = optuna.create_study(directions=["maximize"])
    record.write_given_up(study, {"int8_static": "failed in trials 1 and 4 with different settings: calibration failed"})
    notes = build_report(study, "sqlite:///x.db").notes
    assert "int8_static is no longer searched for this model: failed in trials 1 and 4" in " ".join(notes)


def _space():
    from effsearch.space import default_space

    return default_space(1)
