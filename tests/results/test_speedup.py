"""A point's compression against its dense counterpart: ratios on every point, a flag where it falls short."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import create_trial

from effsearch import record
from effsearch.report.table import front_table
from effsearch.results.front import front_rows, row_json, study_info
from effsearch.results.speedup import SHORT, SLOWER
from effsearch.study.remeasure import candidates

DIST = {"precision": CategoricalDistribution(["fp32", "int8_static"]), "prune_ratio": FloatDistribution(0.0, 0.9)}


def _add(study: optuna.Study, n: int, *, run: int, lead: int, precision: str, prune: float, acc: float, lat: float,
         flops: float, round_to: int | None = 8, onnx_dir: Path = Path("/x")) -> None:
    metrics = {"accuracy": acc, "latency_ms": lat, "flops": flops, "size_bytes": int(1000 * (1 - prune)) + n}
    study.add_trial(create_trial(
        params={"precision": precision, "prune_ratio": prune}, distributions=DIST, values=[acc, lat],
        user_attrs=record.TrialRecord(
            lead=n == lead, baseline=run == 1 and n == lead, run_trial=lead, metrics=metrics, onnx=str(onnx_dir / f"{n}.onnx"),
            prune_round_to=round_to if n == lead and prune > 0 else None,
        ).user_attrs(),
    ))


def _study(onnx_dir: Path = Path("/x")) -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "latency_ms"])
    record.write_meta(study, record.StudyMeta.from_dict({"metric_key": "accuracy", "metric_direction": "maximize", "energy_source": "estimate"}))
    # Run 1, the dense baseline: fp32 1.0 ms, int8 1.5 ms (int8 slower than fp32 here).
    _add(study, 0, run=1, lead=0, precision="fp32", prune=0.0, acc=0.95, lat=1.0, flops=100.0, onnx_dir=onnx_dir)
    _add(study, 1, run=1, lead=0, precision="int8_static", prune=0.0, acc=0.949, lat=1.5, flops=100.0, onnx_dir=onnx_dir)
    # Run 2, pruned 0.5 with channels rounded: fp32 halves its FLOPs and runs at 0.55x: it reaches the artifact.
    _add(study, 2, run=2, lead=2, precision="fp32", prune=0.5, acc=0.94, lat=0.55, flops=50.0, onnx_dir=onnx_dir)
    # Its int8 trial saves 10 % latency for 50 % of FLOPs, and int8 is slow here.
    _add(study, 3, run=2, lead=2, precision="int8_static", prune=0.5, acc=0.939, lat=1.35, flops=50.0, onnx_dir=onnx_dir)
    # Run 3, pruned 0.3 unrounded: slower than dense fp32.
    _add(study, 4, run=3, lead=4, precision="fp32", prune=0.3, acc=0.96, lat=1.2, flops=70.0, round_to=None, onnx_dir=onnx_dir)
    return study


def test_every_point_carries_its_ratios_and_a_shortfall_is_flagged_with_its_cause() -> None:
    rows = {r.trial: r for r in front_rows(_study())}
    assert set(rows) == {0, 2, 4}  # trials 1 and 3 are dominated
    assert rows[0].metrics["latency_vs_dense"] == 1.0 and rows[0].speedup_flag is None
    assert abs(rows[2].metrics["latency_vs_dense"] - 0.55) < 1e-9 and rows[2].metrics["flop_ratio"] == 0.5
    assert rows[2].speedup_flag is None
    flag = rows[4].speedup_flag
    assert flag is not None and flag.startswith(SLOWER) and "round_to off" in flag
    assert row_json(rows[4])["speedup_flag"] == flag and row_json(rows[2])["speedup_flag"] is None


def test_a_precision_without_fast_kernels_is_named_as_the_cause() -> None:
    study = _study()
    study.add_trial(create_trial(  # a dominating point would hide trial 3: lift it onto the front
        params={"precision": "int8_static", "prune_ratio": 0.5}, distributions=DIST, values=[0.999, 1.35],
        user_attrs=record.TrialRecord(lead=False, run_trial=2, onnx="/x/5.onnx", metrics={
            "accuracy": 0.999, "latency_ms": 1.35, "flops": 50.0, "size_bytes": 10}).user_attrs(),
    ))
    row = next(r for r in front_rows(study) if r.trial == 5)
    assert abs(row.metrics["latency_vs_dense"] - 0.9) < 1e-9  # against dense int8 (1.5 ms), not fp32
    assert row.speedup_flag is not None and row.speedup_flag.startswith(SHORT)
    assert "int8_static has no fast kernels" in row.speedup_flag and "1.50x dense fp32" in row.speedup_flag
    assert "round_to off" not in row.speedup_flag  # run 2 rounded its channels


def test_the_table_marks_a_flagged_point_and_says_why() -> None:
    study = _study()
    table = front_table(study_info(study), front_rows(study))
    assert table.caption is not None and "! trial 4: " + SLOWER in table.caption


def test_the_remeasurement_times_each_points_dense_counterpart(tmp_path: Path) -> None:
    study = _study(tmp_path)
    for n in range(5):  # candidates need the artifacts on disk
        (tmp_path / f"{n}.onnx").write_bytes(b"x")
    chosen = {t.number for t in candidates(study)}
    assert {0, 2, 4} <= chosen and 1 not in chosen  # no int8 point on the front: dense int8 is not needed
