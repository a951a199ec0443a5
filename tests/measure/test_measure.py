"""Measurements on a tiny exported model: latency, FLOPs/params, the metric on onnxruntime, export checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import effsearch.onnx_export
from effsearch.errors import TrialError
from effsearch.measure.flops import count_flops
from effsearch.measure.latency import measure_latency
from effsearch.measure.metric import BATCH, Streamed, ort_metric, stack_dataset
from effsearch.onnx_export import export_onnx
from effsearch.userfile import default_metric


def tiny_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 4)).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[nn.Module, Path]:
    model = tiny_mlp()
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    report = export_onnx(model, torch.randn(16, 8), path)
    assert report.path == path and path.is_file()
    assert report.parity_max_abs < 1e-4
    assert report.input_shape == ("batch", 8)
    assert report.input_dtype == "float32"
    return model, path


def test_latency_is_positive_ordered_and_stable(exported):
    _, path = exported
    sample = np.random.default_rng(0).standard_normal((1, 8)).astype(np.float32)
    first, joules = measure_latency(path, sample, warmup=20, repeats=200)
    second, _ = measure_latency(path, sample, warmup=20, repeats=200)
    assert joules is None, "no meter, no energy"
    for report in (first, second):
        assert report.p50_ms > 0
        # The percentiles are of the timed calls, in ms: half of the 200 calls took at least p50 and a
        # tenth at least p90, all inside the timed window; and an onnxruntime call takes over 1 us.
        assert 100 * report.p50_ms / 1e3 <= report.window_s and 20 * report.p90_ms / 1e3 <= report.window_s, report
        assert report.p50_ms > 1e-3, report
        assert report.repeats == 200 and report.threads == 1
        assert report.window_s > 0
        assert report.p50_ms < 50, "a 8-32-4 MLP runs in well under 50 ms at batch 1"
    # These 2-core machines drift by up to ~50% between runs; a factor of 3 catches a broken timer only.
    ratio = first.p50_ms / second.p50_ms
    assert 1 / 3 < ratio < 3, (first, second)


def test_latency_reads_the_meter_over_the_timed_window(exported):
    _, path = exported

    class Meter:
        started = stopped = 0

        def start(self) -> None:
            self.started += 1

        def stop(self) -> float:
            self.stopped += 1
            return 1.5

    meter = Meter()
    _, joules = measure_latency(path, np.zeros((1, 8), np.float32), warmup=5, repeats=20, meter=meter)
    assert joules == 1.5
    assert (meter.started, meter.stopped) == (1, 1)


@pytest.mark.parametrize(("n_in", "n_out"), [(7, 5), (64, 10)])
def test_linear_flops_and_params(n_in, n_out):
    """fvcore counts one fused multiply-add as one flop, so Linear(in, out) on one sample is in*out.

    The bias add is not counted as a flop; it is counted as out parameters.
    """
    report = count_flops(nn.Linear(n_in, n_out), torch.randn(1, n_in))
    assert report.flops == n_in * n_out
    assert report.param_count == n_in * n_out + n_out
    assert report.skipped_ops == {}


def test_conv_flops_equal_a_hand_count():
    """Conv2d(3->4, 3x3, padding 1) on one 3x8x8 image: each of 4*8*8 outputs takes 3*3*3 multiply-adds."""
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    report = count_flops(conv, torch.randn(1, 3, 8, 8))
    assert report.flops == (4 * 8 * 8) * (3 * 3 * 3)
    assert report.param_count == 4 * 3 * 3 * 3


def test_flops_of_a_stack_add_up():
    report = count_flops(tiny_mlp(), torch.randn(1, 8))
    assert report.flops == 8 * 32 + 32 * 4
    assert report.param_count == (8 * 32 + 32) + (32 * 4 + 4)


def test_metric_on_onnxruntime_equals_the_metric_on_torch(exported):
    model, path = exported
    g = torch.Generator().manual_seed(1)
    x = torch.randn(600, 8, generator=g)  # more than one 256-row onnxruntime batch
    y = torch.randint(0, 4, (600,), generator=g)
    data = stack_dataset(TensorDataset(x, y))
    assert len(data) == 600
    with torch.no_grad():
        out = model(x)

    def mean_square(outputs, targets):
        return float((outputs**2).mean())

    for metric in (default_metric, mean_square):
        on_ort = ort_metric(path, data, metric)
        on_torch = metric(out, y)
        assert on_ort == pytest.approx(on_torch, abs=1e-6), metric.__name__


def test_the_validation_set_is_streamed_one_batch_at_a_time(exported):
    _, path = exported
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(600, 8, generator=g), torch.randint(0, 4, (600,), generator=g)

    class Counted(TensorDataset):
        read = 0

        def __getitem__(self, i):
            Counted.read += 1
            return super().__getitem__(i)

    streamed = Streamed(Counted(x, y))
    batches = streamed.batches(BATCH)
    first, _ = next(batches)
    assert len(first["input"]) == BATCH and Counted.read == BATCH, "only the first batch was read"
    assert sum(len(b["input"]) for b, _ in batches) == 600 - BATCH
    assert ort_metric(path, streamed, default_metric) == ort_metric(path, stack_dataset(TensorDataset(x, y)), default_metric)
    assert streamed.head(3).shape == (3, 8)


def test_stack_dataset_limit_and_integer_inputs():
    x = torch.arange(30).reshape(10, 3)
    data = stack_dataset(TensorDataset(x, torch.zeros(10, dtype=torch.long)), limit=4)
    assert data.inputs.dtype == np.int64, "token inputs keep their integer dtype"
    assert data.inputs.shape == (4, 3)
    assert len(data.targets) == 4


def test_export_of_an_unsupported_op_raises_trial_error(tmp_path):
    class CumProd(nn.Module):
        def forward(self, x):
            return torch.cumprod(x, dim=1)

    with pytest.raises(TrialError, match="ONNX export failed"):
        export_onnx(CumProd(), torch.randn(2, 4), tmp_path / "model.onnx")


def test_export_parity_failure_raises_trial_error(tmp_path, monkeypatch):
    real_session = effsearch.onnx_export.ort_session

    class Off:
        """An onnxruntime session whose outputs are off by 0.1, as a miscompiled graph would be."""

        def __init__(self, session) -> None:
            self._session = session

        def run(self, names, feed):
            return [o + 0.1 for o in self._session.run(names, feed)]

        def get_inputs(self):
            return self._session.get_inputs()

    monkeypatch.setattr(effsearch.onnx_export, "ort_session", lambda path, **kw: Off(real_session(path, **kw)))
    with pytest.raises(TrialError, match=r"ONNX parity failed: .* differ by up to 0\.1"):
        export_onnx(tiny_mlp(), torch.randn(3, 8), tmp_path / "model.onnx")
