"""Every precision of a briefly trained digits CNN loads in onnxruntime, keeps float32 I/O and its accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from effsearch.compress.quantize import make_precision
from effsearch.errors import TrialError
from effsearch.measure.metric import ArrayData, ort_metric, stack_dataset
from effsearch.onnx_export import export_onnx
from effsearch.runtime import ort_session
from effsearch.space import PRECISIONS
from effsearch.space.dimensions import EXTRA_PRECISIONS
from effsearch.userfile import default_metric, load_user_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Measured on a 2-core CPU machine (3 epochs, seed 0), on the 360 validation digits: fp32 0.9722,
# fp16 0.9722, int8_dynamic 0.9694, int8_static 0.9722 (largest drop 0.003). The bound allows 2 points.
MAX_DROP = 0.02


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, ArrayData, list[np.ndarray], float]:
    """The digits CNN trained for 3 epochs in-process, exported to fp32; with validation data and calibration."""
    reg = load_user_file(EXAMPLES / "digits_cnn.py").registration
    threads = torch.get_num_threads()
    # One thread: on a busy 2-core machine two threads ran this loop about 15x slower.
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = reg.model()
        train, val = reg.data()
        x, y = train.tensors
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(3):
            perm = torch.randperm(len(x))
            for i in range(0, len(perm), 64):
                idx = perm[i : i + 64]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
        model.eval()
        path = tmp_path_factory.mktemp("digits") / "model.onnx"
        export_onnx(model, x[:32], path)
    finally:
        torch.set_num_threads(threads)
    calibration = [b.numpy() for b in x[:256].split(32)]
    val_data = stack_dataset(val)
    fp32_accuracy = ort_metric(path, val_data, default_metric)
    print(f"\nfp32 accuracy {fp32_accuracy:.4f}")
    assert fp32_accuracy > 0.9, "3 epochs reach over 90% on digits; otherwise the bound below means little"
    return path, val_data, calibration, fp32_accuracy


def test_fp32_is_the_exported_file(trained):
    path, _, calibration, _ = trained
    assert make_precision(path, "fp32", calibration) == path


@pytest.mark.parametrize("precision", [p for p in PRECISIONS + EXTRA_PRECISIONS if p != "fp32"])
def test_each_precision_loads_keeps_float32_io_and_accuracy(trained, precision):
    path, val_data, calibration, fp32_accuracy = trained
    out = make_precision(path, precision, calibration)
    assert out == path.with_name(f"model.{precision}.onnx")
    assert out.is_file()
    assert sorted(p.name for p in path.parent.glob("*.pre.onnx")) == [], "no temporary files are left behind"

    session = ort_session(out)
    assert [i.type for i in session.get_inputs()] == ["tensor(float)"], "callers keep feeding float32"
    assert [o.type for o in session.get_outputs()] == ["tensor(float)"], "callers keep reading float32"
    assert session.get_inputs()[0].shape[1:] == [1, 8, 8]

    size_ratio = out.stat().st_size / path.stat().st_size
    # Measured: fp16 0.51, int8_dynamic 0.27, int8_static 0.29 of the fp32 file.
    assert size_ratio < (0.6 if precision == "fp16" else 0.4), size_ratio

    accuracy = ort_metric(out, val_data, default_metric)
    print(f"{precision} accuracy {accuracy:.4f} (fp32 {fp32_accuracy:.4f}), size {size_ratio:.2f} of fp32")
    assert accuracy >= fp32_accuracy - MAX_DROP


@pytest.mark.parametrize("precision", [p for p in PRECISIONS if p != "fp32"])
def test_a_failing_conversion_raises_trial_error_naming_the_precision(tmp_path, precision):
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"this is not an onnx model")
    calibration = [np.zeros((4, 1, 8, 8), np.float32)]
    with pytest.raises(TrialError, match=rf"^{precision} conversion failed: "):
        make_precision(broken, precision, calibration)


def test_unknown_precision_raises_trial_error(trained):
    path, _, calibration, _ = trained
    with pytest.raises(TrialError, match="unknown precision 'int4'"):
        make_precision(path, "int4", calibration)


def test_the_per_tensor_variant_has_one_scale_per_weight_tensor(trained):
    import onnx
    from onnx import numpy_helper

    path, _, calibration, _ = trained

    def weight_scales(precision: str) -> list[int]:
        model = onnx.load(str(make_precision(path, precision, calibration)))
        inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        # A weight's DequantizeLinear reads an int8 initializer; its scale is the node's second input.
        return [inits[n.input[1]].size for n in model.graph.node
                if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].dtype == np.int8]

    per_channel, per_tensor = weight_scales("int8_static"), weight_scales("int8_static_per_tensor")
    assert per_tensor and len(per_tensor) == len(per_channel)
    assert set(per_tensor) == {1} and max(per_channel) > 1
