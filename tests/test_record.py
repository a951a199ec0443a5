"""The one record of a trial: written in steps, read back with the defaults decided once."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from effsearch import record


def _study() -> optuna.Study:
    return optuna.create_study(directions=["maximize", "minimize"])


def test_a_record_written_in_steps_reads_back_whole() -> None:
    study = _study()
    trial = study.ask({"x": FloatDistribution(0, 1)})
    record.write(trial, lead=True, run=3, run_trial=trial.number)
    record.write(trial, metrics={"accuracy": 0.9}, onnx="/abs/model.onnx")
    study.tell(trial, [0.9, 1.0])
    (t,) = record.read_all(study)
    # The run's number is its place in start order, whatever the run wrote when it began.
    assert (t.lead, t.run, t.run_trial, t.metrics, t.onnx) == (True, 1, 0, {"accuracy": 0.9}, "/abs/model.onnx")
    assert t.is_training_run and t.reason is None and not t.baseline


def test_a_field_that_is_not_in_the_record_is_refused() -> None:
    trial = _study().ask()
    with pytest.raises(TypeError, match="not a field of TrialRecord: runs"):
        record.write(trial, runs=1)


def test_defaults_a_failed_trial_without_a_reason_lost_its_worker_and_keeps_its_run_number() -> None:
    study = _study()
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"lead": True}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, values=[0.5, 1.0]))  # not effsearch's
    lost, other = record.read_all(study)
    assert lost.reason == record.LOST
    assert lost.run == 1 and lost.run_trial == lost.number
    assert not lost.is_training_run, "a lost run is run again, so it does not count"
    assert other.run == 0 and other.reason is None, "a trial of no run belongs to run 0"


def test_runs_are_numbered_by_their_lead_trials_start_and_precisions_share_the_number() -> None:
    import datetime

    study = _study()
    t0 = datetime.datetime(2026, 1, 1)
    starts = {0: 30, 1: 10, 2: 20}  # trials 0-2 are leads that started out of number order
    for number, offset in starts.items():
        trial = optuna.trial.create_trial(state=TrialState.COMPLETE, values=[0.5, 1.0], user_attrs={"lead": True})
        trial.datetime_start = t0 + datetime.timedelta(seconds=offset)
        study.add_trial(trial)
    study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, values=[0.4, 0.9], user_attrs={"lead": False, "run_trial": 0}))
    runs = {t.number: t.run for t in record.read_all(study)}
    assert runs == {1: 1, 2: 2, 0: 3, 3: 3}


def test_a_running_trial_whose_worker_is_provably_dead_reads_as_lost() -> None:
    from effsearch.host import this_process

    study = _study()
    alive = study.ask()
    record.write(alive, lead=True, worker=this_process())
    dead = study.ask()
    record.write(dead, lead=True, worker={**this_process(), "pid": 2**22 + 12345})  # above any pid_max default
    here, gone = record.read_all(study)
    assert not here.lost and here.is_training_run and here.reason is None
    assert gone.lost and not gone.is_training_run
    assert gone.reason == f"worker lost: process {2**22 + 12345} on {this_process()['host']} is gone"


@pytest.mark.parametrize(
    ("state", "attrs", "counts"),
    [
        (TrialState.COMPLETE, {"lead": True}, True),
        (TrialState.RUNNING, {"lead": True}, True),  # another worker's run in progress
        (TrialState.FAIL, {"lead": True, "fail_reason": "non-finite loss (nan)"}, True),
        (TrialState.FAIL, {"lead": True, "fail_reason": "interrupted"}, False),
        (TrialState.FAIL, {"lead": True, "fail_reason": "worker lost: ..."}, False),
        (TrialState.PRUNED, {"lead": True, "stopped": "stopped after epoch 2 of 8: ..."}, True),  # it trained
        (TrialState.PRUNED, {"lead": True, "screened": "screened: latency ..."}, False),  # it never trained
        (TrialState.COMPLETE, {"lead": False}, False),  # a free precision point of a run
        (TrialState.COMPLETE, {}, False),
    ],
)
def test_what_counts_as_a_training_run(state, attrs, counts) -> None:
    study = _study()
    if state == TrialState.RUNNING:
        trial = study.ask()
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
    else:
        values = [0.5, 1.0] if state == TrialState.COMPLETE else None
        study.add_trial(optuna.trial.create_trial(state=state, values=values, user_attrs=attrs))
    (t,) = study.get_trials()
    assert record.is_training_run(t) is counts


def test_the_study_record_round_trips() -> None:
    study = _study()
    assert record.read_meta(study) == {} and record.read_given_up(study) == {} and record.read_limits(study) == {}
    record.write_meta(study, {"metric_key": "accuracy"})
    record.write_limits(study, {"max_latency_ms": 0.2})
    record.write_given_up(study, {"fp16": "conversion failed"})
    assert record.read_meta(study) == {"metric_key": "accuracy"}
    assert record.read_limits(study) == {"max_latency_ms": 0.2}
    assert record.read_given_up(study) == {"fp16": "conversion failed"}
