"""torch -> ONNX with the TorchScript exporter, checked with onnx.checker and for torch/onnxruntime parity."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from effsearch.attention import lean_copy, plain_attention
from effsearch.errors import TrialError
from effsearch.runtime import ort_session

__all__ = ["ExportReport", "export_onnx", "INPUT_NAME", "OUTPUT_NAME", "OPSET"]

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "output"
OPSET = 17


@dataclass(frozen=True)
class ExportReport:
    """The exported file, its worst torch/onnxruntime difference, and the input it takes (dtype as in the graph)."""

    path: Path
    parity_max_abs: float
    input_dtype: str
    input_shape: tuple[int | str, ...]


def _graph_input_dtype(path: Path) -> str:
    model = onnx.load(str(path), load_external_data=False)
    elem = model.graph.input[0].type.tensor_type.elem_type
    return str(onnx.helper.tensor_dtype_to_np_dtype(elem))


class _Captured:
    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile(mode="w+b")

    def read(self) -> str:
        self.file.seek(0)
        return self.file.read().decode(errors="replace")[-8000:]


@contextmanager
def _captured_output() -> Iterator[_Captured]:
    """Send what the exporter's C++ side prints (a graph dump on failure) to a buffer, not the user's terminal."""
    captured = _Captured()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(captured.file.fileno(), 1)
        os.dup2(captured.file.fileno(), 2)
        yield captured
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def export_onnx(module: torch.nn.Module, batch: torch.Tensor, path: Path, rtol: float = 1e-3, atol: float = 1e-4) -> ExportReport:
    """Export with a dynamic batch axis, check the graph, and compare onnxruntime with torch on `batch`.

    The TorchScript exporter (dynamo=False) is used: about 100x faster on small models here than the
    dynamo exporter, and parity is checked on every export either way. nn.MultiheadAttention exports
    as LeanMultiheadAttention, the rest of attention on its composite path (see plain_attention). The
    input keeps the batch's dtype (int64 tokens stay int64).
    """
    module = module.cpu().eval()
    batch = batch.cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings(), torch.no_grad(), plain_attention(), _captured_output() as captured:
            warnings.simplefilter("ignore")
            torch.onnx.export(
                lean_copy(module),
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
        raise TrialError(f"ONNX export failed: {type(exc).__name__}: {first}", captured.read()) from exc
    # The reference is the user's module itself, with torch's own attention, so parity covers the lean copy too.
    with torch.no_grad(), plain_attention():
        expected = module(batch).numpy()
    input_dtype = _graph_input_dtype(path)
    wanted = str(batch.numpy().dtype)
    if input_dtype != wanted:
        raise TrialError(f"ONNX export changed the input dtype from {wanted} to {input_dtype}; feed the model {input_dtype} or cast inside forward")
    got = ort_session(path).run(None, {INPUT_NAME: batch.numpy()})[0]
    diff = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=rtol, atol=atol):
        raise TrialError(
            f"ONNX parity failed: onnxruntime and torch outputs differ by up to {diff:.3g} on a batch of {len(batch)}"
        )
    shape: tuple[int | str, ...] = ("batch", *batch.shape[1:])
    return ExportReport(path, diff, input_dtype, shape)
