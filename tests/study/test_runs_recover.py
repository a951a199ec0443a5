"""A run stopped at any stage is recorded as what happened to it, a dead worker is told by its lease, and no
error loops: Ctrl-C never loses the baseline, a live worker in another container is never failed, and
runs that keep failing before training end the study with their reason."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from effsearch import record
from effsearch.constraints import Constraints
from effsearch.errors import EffsearchError
from effsearch.host import this_process
from effsearch.objectives import parse_objectives
from effsearch.space import load_space
from effsearch.study import TuneSettings, tune
from effsearch.study.loop import fail_dead_workers, run_loop, runs_counted
from effsearch.userfile import load_user_file, probe

USERFILES = Path(__file__).resolve().parents[1] / "userfiles"
SPACE = 'world_size = 1\nbatch_size = 128\n\n[precision]\nchoices = ["fp32", "int8_dynamic"]\n'
DEAD_PID = 2**22 + 12345  # above any pid_max default


def _settings(tmp_path: Path, trials: int, **extra) -> tuple[TuneSettings, object, object, object]:
    (tmp_path / "space.toml").write_text(SPACE)
    uf = load_user_file(USERFILES / "tiny_mlp.py")
    info, datasets = probe(uf)
    keys, dirs = parse_objectives(None, uf.metric_key, uf.registration.metric_direction)
    settings = TuneSettings(
        study_name="s", storage_url=f"sqlite:///{tmp_path / 'studies' / 's.db'}", trials=trials,
        space=load_space(tmp_path / "space.toml", 1), objectives=keys, directions=dirs, epochs=1, artifacts=tmp_path / "runs",
        constraints=Constraints(max_metric_drop=1.0), latency_repeats=20, **extra,
    )
    return settings, uf, info, datasets


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("stage", ["measuring untrained", "recording the precisions"])
def test_ctrl_c_at_any_stage_records_interrupted_and_queues_the_baseline_again(stage, tmp_path, monkeypatch) -> None:
    from effsearch.study.recording import Recorder
    from effsearch.study.screening import Screen

    settings, uf, info, datasets = _settings(tmp_path, trials=1)
    with monkeypatch.context() as patched:
        if stage == "measuring untrained":
            patched.setattr(Screen, "figures", _interrupt)
        else:  # after training and export, while the baseline's figures are being written
            patched.setattr(Recorder, "set_baseline", _interrupt)
        with pytest.raises(KeyboardInterrupt):
            tune(settings, uf=uf, probe=info, datasets=datasets)
    study = optuna.load_study(study_name="s", storage=settings.storage_url)
    (interrupted,) = record.read_all(study, states=(TrialState.FAIL,))
    assert interrupted.reason == "interrupted" and interrupted.baseline
    assert not interrupted.is_training_run, "an interrupted run does not count toward --trials"
    (queued,) = study.get_trials(states=(TrialState.WAITING,))
    fixed = queued.system_attrs["fixed_params"]
    assert queued.user_attrs.get("baseline") and {k: fixed[k] for k in interrupted.params} == interrupted.params
    assert [t.number for t in study.trials] == [interrupted.number, queued.number], "none of its precisions was written"

    if stage == "measuring untrained":
        return
    # The next tune runs the baseline again, and the front (a metric-drop limit in force) has it.
    _, summary = tune(settings, uf=uf, probe=info, datasets=datasets)
    from effsearch.results.front import baseline, front_rows

    base = baseline(summary.study)
    assert base is not None and base.trial == queued.number
    assert any(r.baseline for r in front_rows(summary.study))
    assert runs_counted(summary.study) == 1
    (other,) = [t for t in record.read_all(summary.study) if not t.lead]
    assert other.run_trial == queued.number and other.params["precision"] == "int8_dynamic" and other.state == TrialState.COMPLETE


def test_runs_failing_before_training_end_the_study_with_their_reason(tmp_path) -> None:
    # A study resumed with another precision list: Optuna refuses every suggestion of `precision`, so no
    # run ever counts toward the total.
    settings, uf, info, datasets = _settings(tmp_path, trials=2, timeout_s=30)
    (tmp_path / "studies").mkdir()
    study = optuna.create_study(study_name="s", storage=settings.storage_url, directions=list(settings.directions))
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.FAIL, params={"precision": "fp16"}, distributions={"precision": CategoricalDistribution(["fp32", "fp16"])},
    ))
    from effsearch.study import Instruments, Tuner

    tuner = Tuner(study, uf, settings, tools=Instruments.choose())
    t0 = time.monotonic()
    with pytest.raises(EffsearchError) as caught:
        tuner.run(datasets)
    message = str(caught.value)
    assert time.monotonic() - t0 < 30
    assert "3 runs in a row failed before training" in message and "CategoricalDistribution does not support dynamic value space" in message
    assert "\n" not in message and caught.value.exit_code == 1
    assert len(study.get_trials(states=(TrialState.FAIL,))) == 1 + 3


def test_run_loop_stops_after_three_failures_before_training_and_not_before(tmp_path) -> None:
    study = optuna.create_study(directions=["maximize"])
    calls = []

    def objective(trial: optuna.Trial) -> list[float]:
        calls.append(trial.number)
        if len(calls) == 3:  # one run in between trains: the count starts again
            record.write(trial, lead=True)
            return [1.0]
        record.write(trial, fail_reason="ValueError: no such dimension")
        raise ValueError("no such dimension")

    with pytest.raises(EffsearchError, match=r"3 runs in a row failed before training \(trials 3, 4, 5\), the last with: ValueError"):
        run_loop(study, lambda t: _caught(objective, t), trials=10, timeout_s=30)
    assert len(calls) == 6


def _caught(objective, trial):
    from effsearch.errors import TrialError

    try:
        return objective(trial)
    except ValueError as exc:
        raise TrialError(str(exc)) from exc


# -- leases ----------------------------------------------------------------------------------------------

DISTS = {"lr": FloatDistribution(1e-4, 1e-1, log=True), "precision": CategoricalDistribution(["fp32", "fp16"])}


def _running(study: optuna.Study, *, worker: dict, lease_s: float | None, baseline: bool = False) -> optuna.Trial:
    """A RUNNING lead trial written as a worker elsewhere would: its process, and a lease `lease_s` from now."""
    trial = study.ask(DISTS)
    attrs = {"lead": True, "worker": {**worker, "trial": trial.number}, "baseline": baseline or None, "run": 1, "config": {"lr": 0.01}}
    if lease_s is not None:
        attrs["lease"] = {"trial": trial.number, "until": time.time() + lease_s}
    for key, value in attrs.items():  # as stored, whatever this version's writer would make of it
        if value is not None:
            trial.set_user_attr(key, value)
    return trial


def test_a_worker_whose_lease_ran_out_on_another_host_is_failed_and_its_run_queued_without_its_record(tmp_path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'l.db'}", directions=["maximize"])
    elsewhere = {"host": "another-host", "boot": "b", "pidns": "pid:[1]", "pid": 4242, "start": 1}
    dead = _running(study, worker=elsewhere, lease_s=-5.0, baseline=True)
    assert record.read(study.trials[dead.number]).lost
    assert runs_counted(study) == 0, "a run whose worker is gone does not count"

    assert fail_dead_workers(study) == [dead.number]
    trials = study.get_trials()
    assert trials[dead.number].state == TrialState.FAIL
    assert trials[dead.number].user_attrs["fail_reason"].startswith("worker lost: process 4242 on another-host stopped renewing its lease")
    (retry,) = [t for t in trials if t.state == TrialState.WAITING]
    assert retry.params == trials[dead.number].params and retry.system_attrs["failed_trial"] == dead.number
    assert retry.user_attrs == {"baseline": True}, "the copy carries the baseline's mark, not the dead worker's record"


def test_a_live_worker_in_another_container_of_this_host_is_not_failed(tmp_path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'l.db'}", directions=["maximize"])
    # Same host name and boot (host networking, one kernel), its own pids: its pid is not one of ours.
    container = {**this_process(), "pidns": "pid:[4026599999]", "pid": DEAD_PID}
    assert container["host"] == socket.gethostname()
    live = _running(study, worker=container, lease_s=30.0)
    assert not record.read(study.trials[live.number]).lost
    assert fail_dead_workers(study) == []
    assert study.trials[live.number].state == TrialState.RUNNING
    assert runs_counted(study) == 1

    # Here, in this container, a dead process is still seen at once, lease or not.
    here = _running(study, worker={**this_process(), "pid": DEAD_PID}, lease_s=30.0)
    assert fail_dead_workers(study) == [here.number]


def test_a_retried_copy_is_not_judged_by_the_record_it_inherited(tmp_path) -> None:
    """Optuna's heartbeat retry copies every user attribute: the dead worker's lease and process are not the copy's."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'l.db'}", directions=["maximize"])
    dead = _running(study, worker={**this_process(), "pid": DEAD_PID}, lease_s=-5.0)
    frozen = study.trials[dead.number]
    study._storage.set_trial_state_values(dead._trial_id, state=TrialState.FAIL)
    optuna.storages.RetryFailedTrialCallback(max_retry=1)(study, frozen)
    copy = study.ask()  # the queued copy, RUNNING before its worker writes anything
    assert copy.user_attrs["lease"]["trial"] == dead.number
    assert not record.read(study.trials[copy.number]).lost and fail_dead_workers(study) == []

    from effsearch.study.lease import Lease

    with Lease(copy, interval_s=1, grace_s=2):
        attrs = study.trials[copy.number].user_attrs
        assert attrs["lease"]["trial"] == copy.number and attrs["worker"]["trial"] == copy.number
        assert attrs.get("config") is None and attrs.get("run") is None, "the dead run's record is cleared"
        time.sleep(2.5)  # renewed: still held after its grace
        assert not record.read(study.trials[copy.number]).lost
