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
    assert (t.lead, t.run, t.run_trial, t.metrics, t.onnx) == (True, 3, 0, {"accuracy": 0.9}, "/abs/model.onnx")
    assert t.is_training_run and t.reason is None and not t.baseline


def test_a_field_that_is_not_in_the_record_is_refused() -> None:
    trial = _study().ask()
    with pytest.raises(TypeError, match="not a field of TrialRecord: runs"):
        record.write(trial, runs=1)


def test_defaults_a_failed_trial_without_a_reason_lost_its_worker_and_belongs_to_no_run() -> None:
    study = _study()
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs={"lead": True}))
    (t,) = record.read_all(study)
    assert t.reason == record.LOST
    assert t.run == 0 and t.run_trial == t.number
    assert not t.is_training_run, "a lost run is run again, so it does not count"


@pytest.mark.parametrize(
    ("state", "attrs", "counts"),
    [
        (TrialState.COMPLETE, {"lead": True}, True),
        (TrialState.RUNNING, {"lead": True}, True),  # another worker's run in progress
        (TrialState.FAIL, {"lead": True, "fail_reason": "non-finite loss (nan)"}, True),
        (TrialState.FAIL, {"lead": True, "fail_reason": "interrupted"}, False),
        (TrialState.FAIL, {"lead": True, "fail_reason": "worker lost: ..."}, False),
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
