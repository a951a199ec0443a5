"""The one record of a trial and the study's own: written in steps, read back with the defaults decided once."""

from __future__ import annotations

import json

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
    assert not record.read_meta(study).exists and record.read_given_up(study) == {} and record.read_limits(study) == {}
    meta = record.StudyMeta(metric=record.Metric(key="accuracy"), objectives=("accuracy", "latency_ms"))
    record.write_meta(study, meta)
    record.write_limits(study, {"max_latency_ms": 0.2})
    record.write_given_up(study, {"fp16": "conversion failed"})
    assert record.read_meta(study) == meta and record.read_meta(study).exists
    assert record.read_limits(study) == {"max_latency_ms": 0.2}
    assert record.read_given_up(study) == {"fp16": "conversion failed"}


# What `tune` records on a study today (study/create.py), as stored: the README's contract.
STORED = {
    "id": "3f2a", "user_file": "/w/my_model.py", "user_file_sha256": "ab" * 32, "metric_key": "accuracy",
    "metric_direction": "maximize", "objectives": ["accuracy", "latency_ms"],
    "space": {"world_size": {"low": 1, "high": 2}, "precision": {"choices": ["fp32", "int8_dynamic"]}},
    "epochs": 3, "storage": "sqlite:///studies/effsearch.db", "artifacts": "/w/studies/s-3f2a", "seed": 0,
    "channel_multiple": 8, "input_shape": [30], "input_dtype": "float32",
    "inputs": {"input": {"shape": [30], "dtype": "float32"}}, "energy_source": "estimate",
    "infer_energy_source": None, "energy_meter": "cpu-time", "energy_basis": "an estimate from CPU time",
    "latency_target": "cpu", "latency": {"threads": 2, "batch": 4, "sequence_length": None, "warmup": 50, "repeats": 300},
    "created": "2026-12-01T10:00:00+0000",
    "environment": {
        "host": "h", "user": "u", "platform": "Linux", "python": "3.12.1", "cpu": "x86", "cores_usable": 2,
        "torch_threads": 2, "latency_threads": 2, "cuda_devices": 0, "versions": {"effsearch": "0.1", "onnx": None},
    },
}


def test_the_study_s_own_record_keeps_its_stored_shape() -> None:
    meta = record.StudyMeta.from_dict(STORED)
    assert meta.to_dict() == STORED and json.dumps(meta.to_dict()) == json.dumps(STORED), "same keys, same order"
    assert record.StudyMeta.from_dict(meta.to_dict()) == meta
    assert (meta.metric.key, meta.latency.batch, meta.latency.threads, meta.energy.infer_source) == ("accuracy", 4, 2, None)
    study = _study()
    record.write_meta(study, meta)
    assert study.user_attrs["effsearch"] == STORED


def test_a_study_s_record_from_an_older_effsearch_reads_with_the_defaults() -> None:
    # The first effsearch recorded no latency protocol (its threads with the host), no inference meter, no id.
    old = {k: v for k, v in STORED.items() if k not in ("id", "latency", "infer_energy_source", "channel_multiple", "seed")}
    old["energy_source"] = "rapl"
    meta = record.StudyMeta.from_dict(old)
    assert meta.exists and meta.id is None and meta.channel_multiple is None
    assert meta.latency == record.Latency(target="cpu", threads=2, batch=1, warmup=50, repeats=300, recorded=False)
    assert meta.energy.infer_source == "rapl", "inference energy was read where training's was"
    partial = record.StudyMeta.from_dict({"channel_multiple": 16}, names=["accuracy", "latency_ms"])
    assert partial.exists and partial.channel_multiple == 16
    assert partial.objectives == ("accuracy", "latency_ms") and partial.metric == record.Metric(key="accuracy", direction="maximize")
    assert (partial.latency.target, partial.latency.threads, partial.latency.batch, partial.energy.source) == ("cpu", 1, 1, "estimate")


def test_a_study_effsearch_did_not_make_reads_as_no_record() -> None:
    study = _study()
    meta = record.read_meta(study)
    assert not meta.exists and meta.artifacts is None and meta.user_file is None
    assert meta.objectives == ("objective_0", "objective_1") and meta.metric.key == "objective_0"
    study.set_metric_names(["accuracy", "latency_ms"])
    assert record.read_meta(study).objectives == ("accuracy", "latency_ms") and record.read_meta(study).metric.key == "accuracy"
