"""Inference energy: read with a meter that reads what the latency target runs on, over a long enough window."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from effsearch.measure.artifact import INFER_WINDOW_S, Measurer, inference_meter, target_hardware
from effsearch.measure.energy import EnergyMeter, meter_reads
from effsearch.measure.latency import measure_latency
from effsearch.onnx_export import export_onnx
from effsearch.plugins import choose_energy_meter, plugins_of_kind
from effsearch.userfile import load_user_file, probe

CPU = ["CPUExecutionProvider"]
CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]

TINY = """\
import torch
from torch import nn
from torch.utils.data import TensorDataset

import effsearch


def load():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 8, generator=g)
    y = (x[:, 0] > 0).long()
    return TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:])


effsearch.register(model=lambda: nn.Linear(8, 2), data=load, name="tiny")
"""


class Recording(EnergyMeter):
    """Reads 1 J per window and keeps the windows it was read over (time.perf_counter)."""

    name = "recording"
    measured = True
    scope = "process"
    windows: list[tuple[float, float]] = []

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        type(self).windows.append((self._t0, time.perf_counter()))
        return 1.0


class GpuMachineMeter(Recording):
    """Stands for NVML: a machine meter of the GPUs."""

    name = "gpumachine"
    scope = "machine"
    reads = "gpu"


class SlowCounter(Recording):
    name = "slowcounter"
    min_window_s = 0.8


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return export_onnx(nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2)).eval(), torch.randn(4, 8), path).path


def test_the_energy_window_lasts_at_least_as_asked_and_counts_its_calls(onnx_file) -> None:
    Recording.windows = []
    report, joules = measure_latency(onnx_file, np.zeros((1, 8), np.float32), warmup=5, repeats=20,
                                     meter=Recording(), energy_window_s=0.3)
    (start, stop), = Recording.windows
    assert stop - start >= 0.3 and report.energy_window_s >= 0.3
    # Many more calls than the 20 timed ones: a tiny MLP runs in well under a millisecond.
    assert report.energy_calls > 20 and joules == 1.0
    assert report.window_s < 0.3  # the timed calls alone would have been too short a window


def test_what_a_target_runs_on() -> None:
    assert target_hardware(CPU) == "cpu"
    assert target_hardware(CUDA) == "gpu"
    assert target_hardware(["SomeNpuExecutionProvider"]) is None


def test_meters_say_what_they_read() -> None:
    reads = {p.name: meter_reads(p.obj) for p in plugins_of_kind("energy_meter")}
    assert (reads["estimate"], reads["rapl"], reads["nvml"]) == ("cpu", "cpu", "gpu")
    assert meter_reads(Recording) == "cpu"  # a process meter counts its own process's (CPU) work
    assert meter_reads(type("Unsaid", (Recording,), {"scope": "machine"})) is None


def test_a_cpu_target_is_never_read_with_a_gpu_meter() -> None:
    chosen = inference_meter(GpuMachineMeter, CPU)
    assert chosen is not None and chosen is not GpuMachineMeter and meter_reads(chosen) == "cpu"
    # The best usable CPU meter, by the training meter's own rule: RAPL where readable, else the estimate.
    cpu_meters = [p for p in plugins_of_kind("energy_meter") if not p.unavailable and meter_reads(p.obj) == "cpu"]
    assert chosen.name == max(cpu_meters, key=lambda p: (p.obj.measured, p.obj.priority, p.builtin)).name
    # A training meter that reads the target's hardware is kept (a forced --energy-meter stays forced).
    assert inference_meter(Recording, CPU) is Recording


def test_a_gpu_target_without_a_gpu_meter_reads_nothing() -> None:
    nvml = next(p for p in plugins_of_kind("energy_meter") if p.name == "nvml")
    chosen = inference_meter(choose_energy_meter("estimate"), CUDA)
    assert chosen is (None if nvml.unavailable else nvml.obj)
    assert inference_meter(Recording, ["SomeNpuExecutionProvider"]) is None


def _measurer(write_user_file, meter_cls, providers, **kw) -> Measurer:
    uf = load_user_file(write_user_file(TINY))
    _, datasets = probe(uf)
    return Measurer(uf, datasets, meter_cls, providers, warmup=5, repeats=20, **kw)


def test_measure_reads_the_cpu_meter_and_labels_its_source(write_user_file, onnx_file) -> None:
    m = _measurer(write_user_file, GpuMachineMeter, CPU, infer_window_s=0.2).measure(onnx_file, flops=1000)
    expected = inference_meter(GpuMachineMeter, CPU)
    assert m["infer_energy_source"] == (expected.name if expected.measured else "estimate")
    assert m["infer_energy_mj"] > 0 and m["flops_per_j"] == pytest.approx(1000 / (m["infer_energy_mj"] / 1e3))


def test_measure_writes_null_where_nothing_reads_the_target(write_user_file, onnx_file) -> None:
    measurer = _measurer(write_user_file, Recording, ["SomeNpuExecutionProvider", "CPUExecutionProvider"])
    m = measurer.measure(onnx_file, flops=1000)
    assert m["infer_energy_mj"] is None and m["infer_energy_source"] is None
    assert "flops_per_j" not in m
    assert m["latency_ms"] > 0


def test_a_meter_s_stated_minimum_lengthens_the_window(write_user_file, onnx_file) -> None:
    assert _measurer(write_user_file, Recording, CPU).infer_window_s == INFER_WINDOW_S == 0.05
    measurer = _measurer(write_user_file, SlowCounter, CPU)
    assert measurer.infer_window_s == 0.8
    SlowCounter.windows = []
    measurer.measure(onnx_file, flops=1000)
    (start, stop), = SlowCounter.windows
    assert stop - start >= 0.8


def test_an_unmeasurable_inference_objective_is_refused_in_one_line() -> None:
    from effsearch.errors import StudyError
    from effsearch.measure.artifact import check_inference_objectives

    npu = ["SomeNpuExecutionProvider"]
    check_inference_objectives(("accuracy", "latency_ms", "energy_j"), Recording, npu)  # not asked for: fine
    check_inference_objectives(("accuracy", "infer_energy_mj"), Recording, CPU)  # the CPU can be read
    with pytest.raises(StudyError) as refused:
        check_inference_objectives(("accuracy", "infer_energy_mj", "flops_per_j"), Recording, npu)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("--objectives infer_energy_mj,flops_per_j: ")
    assert StudyError.exit_code == 2


class OneWatt(EnergyMeter):
    """Reads 1 W over its window: joules = seconds, so a slower model spends more per call."""

    name = "onewatt"
    measured = True
    scope = "process"
    min_window_s = 0.02

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        return time.perf_counter() - self._t0


def test_the_remeasurement_reads_a_measuring_meter_in_repeated_windows(tmp_path: Path) -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import create_trial

    from effsearch import record
    from effsearch.measure.blocks import ENERGY_PROTOCOL, measure_energy
    from effsearch.results.front import front_rows
    from effsearch.study.remeasure import remeasure

    torch.manual_seed(0)
    small = export_onnx(nn.Linear(8, 2).eval(), torch.randn(4, 8), tmp_path / "small.onnx").path
    wide = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(8 if _ == 0 else 512, 512), nn.ReLU())], nn.Linear(512, 2))
    big = export_onnx(wide.eval(), torch.randn(4, 8), tmp_path / "big.onnx").path
    sample = np.zeros((1, 8), np.float32)
    figures = measure_energy({"small": small, "big": big}, sample, OneWatt)
    assert all(f.windows == ENERGY_PROTOCOL["windows"] and f.lo_mj <= f.mj <= f.hi_mj for f in figures.values())
    assert figures["big"].mj > 2 * figures["small"].mj  # joules per call follow the time per call here

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "infer_energy_mj"])
    record.write_meta(study, record.StudyMeta.from_dict({"metric_key": "accuracy", "metric_direction": "maximize", "energy_source": "onewatt"}))
    dist = {"precision": CategoricalDistribution(["fp32"])}
    for n, (path, acc) in enumerate(((big, 0.95), (small, 0.9))):
        metrics = {"accuracy": acc, "infer_energy_mj": 1.0, "latency_ms": 1.0, "size_bytes": path.stat().st_size}
        study.add_trial(create_trial(
            params={"precision": "fp32"}, distributions=dist, values=[acc, 1.0 - n / 2],  # both on the front
            user_attrs=record.TrialRecord(lead=True, baseline=n == 0, metrics=metrics, onnx=str(path)).user_attrs(),
        ))
    assert "energy" not in remeasure(study, sample=sample)  # no meter: latency only
    entry = remeasure(study, sample=sample, meter_cls=OneWatt)
    assert entry["energy"]["meter"] == "onewatt"
    rows = {r.trial: r.metrics for r in front_rows(study)}
    assert rows[0]["infer_energy_first_mj"] == 1.0 and rows[0]["infer_energy_mj"] == entry["trials"]["0"]["energy_mj"]
    lo, hi = rows[1]["infer_energy_interval_mj"]
    assert lo <= rows[1]["infer_energy_mj"] <= hi
