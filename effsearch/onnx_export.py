"""torch -> ONNX with the TorchScript exporter, checked with onnx.checker and for torch/onnxruntime parity."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from effsearch.errors import TrialError

__all__ = ["ExportReport", "export_onnx", "ort_session", "INPUT_NAME", "OUTPUT_NAME", "OPSET"]

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "output"
OPSET = 17


@dataclass(frozen=True)
class ExportReport:
    path: Path
    parity_max_abs: float
    input_dtype: str
    input_shape: tuple[int | str, ...]


def ort_session(path: str | Path, threads: int = 1, providers: list[str] | None = None):
    """An onnxruntime session with a fixed intra-op thread count (latency depends on it)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"])


def export_onnx(module: torch.nn.Module, batch: torch.Tensor, path: Path, rtol: float = 1e-3, atol: float = 1e-4) -> ExportReport:
    """Export with a dynamic batch axis, check the graph, and compare onnxruntime with torch on `batch`.

    The TorchScript exporter (dynamo=False) is used: about 100x faster on small models here than the
    dynamo exporter, and parity is checked on every export either way.
    """
    module = module.cpu().eval()
    batch = batch.cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (batch,),
                str(path),
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
            )
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise TrialError(f"ONNX export failed: {type(exc).__name__}: {first}") from exc
    with torch.no_grad():
        expected = module(batch).numpy()
    got = ort_session(path).run(None, {INPUT_NAME: batch.numpy()})[0]
    diff = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=rtol, atol=atol):
        raise TrialError(
            f"ONNX parity failed: onnxruntime and torch outputs differ by up to {diff:.3g} on a batch of {len(batch)}"
        )
    shape: tuple[int | str, ...] = ("batch", *batch.shape[1:])
    return ExportReport(path, diff, str(batch.dtype).removeprefix("torch."), shape)
