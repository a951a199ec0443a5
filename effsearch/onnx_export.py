"""torch -> ONNX with the TorchScript exporter, checked with onnx.checker and for torch/onnxruntime parity."""

from __future__ import annotations

import inspect
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from effsearch import inputs
from effsearch.attention import lean_copy, plain_attention
from effsearch.errors import TrialError
from effsearch.inputs import INPUT_NAME
from effsearch.outputs import Field, Picked, field_of, pick
from effsearch.runtime import ort_session

__all__ = ["ExportReport", "export_onnx", "INPUT_NAME", "OUTPUT_NAME", "OPSET"]

log = logging.getLogger(__name__)

OUTPUT_NAME = "output"
OPSET = 17


@dataclass(frozen=True)
class ExportReport:
    """The exported file, its worst torch/onnxruntime difference, and the inputs it takes.

    input_dtype, input_shape: the first input's (dtype as in the graph; "batch" and, where kept dynamic,
    "sequence" for its axes); inputs: every input by name, {"dtype", "shape"}.
    """

    path: Path
    parity_max_abs: float
    input_dtype: str
    input_shape: tuple[int | str, ...]
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    output: str = OUTPUT_NAME  # the graph's output: "output", or the field of a ModelOutput or dict it was


def _graph_inputs(path: Path) -> dict[str, str]:
    """The graph's inputs, name -> numpy dtype."""
    model = onnx.load(str(path), load_external_data=False)
    return {i.name: str(onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)) for i in model.graph.input}


def _ordered(module: torch.nn.Module, batch: Any) -> Any:
    """A dict input in the order of forward's parameters: the exporter binds keywords to it that way."""
    if not isinstance(batch, dict):
        return batch
    order = list(inspect.signature(module.forward).parameters)
    return dict(sorted(batch.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def _export_args(batch: Any, module: torch.nn.Module) -> tuple[Any, ...]:
    if isinstance(batch, dict) and not isinstance(module, _Positional):
        return (batch,)  # a trailing dict: keyword arguments
    return tuple(inputs.parts(batch))


class _Positional(torch.nn.Module):
    """The module, its input's parts taken positionally, returning the one tensor outputs.pick takes.

    For a forward that returns a ModelOutput, dict or tuple: the exporter binds a trailing dict of
    keywords by the signature of the module it is given, which a wrapper's (*args, **kwargs) hides.
    """

    def __init__(self, module: torch.nn.Module, batch: Any, field: Field) -> None:
        super().__init__()
        self.module = module
        self.keys = list(batch) if isinstance(batch, dict) else None
        self.field = field

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        x = dict(zip(self.keys, args)) if self.keys is not None else (args if len(args) > 1 else args[0])
        return pick(inputs.call(self.module, x), self.field)


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


def _shorter(batch: Any, dynamic: list[str]) -> Any | None:
    """The batch with its sequence axis one shorter (the parts export kept it dynamic for), or None."""
    named = dict(zip(inputs.names(batch), inputs.parts(batch)))
    if not dynamic or any(named[n].shape[1] < 2 for n in dynamic):
        return None
    return inputs.rebuild(batch, [t[:, :-1] if n in dynamic else t for n, t in named.items()])


def _parity(module: torch.nn.Module, batch: Any, path: Path, rtol: float, atol: float, output: Field = None) -> tuple[bool, float]:
    with torch.no_grad(), plain_attention():
        expected = pick(inputs.call(module, batch), output).numpy()
    session = ort_session(path)
    got = session.run(None, inputs.for_session(session, inputs.feed(batch)))[0]
    if got.shape != expected.shape:
        return False, float("inf")
    diff = float(np.max(np.abs(got - expected))) if expected.size else 0.0
    return bool(np.allclose(got, expected, rtol=rtol, atol=atol)), diff


def _export(module: torch.nn.Module, batch: Any, path: Path, sequence: list[str], output: str = OUTPUT_NAME) -> None:
    names = inputs.names(batch)
    axes: dict[str, dict[int, str]] = {n: ({0: "batch", 1: "sequence"} if n in sequence else {0: "batch"}) for n in names}
    try:
        with warnings.catch_warnings(), torch.no_grad(), plain_attention(), _captured_output() as captured:
            warnings.simplefilter("ignore")
            torch.onnx.export(
                lean_copy(module),
                _export_args(batch, module),
                str(path),
                dynamo=False,
                input_names=names,
                output_names=[output],
                dynamic_axes={**axes, output: {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
            )
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise TrialError(f"ONNX export failed: {type(exc).__name__}: {first}", captured.read()) from exc


def export_onnx(
    module: torch.nn.Module, batch: Any, path: Path, rtol: float = 1e-3, atol: float = 1e-4, *, output: Field = None
) -> ExportReport:
    """Export with a dynamic batch axis, check the graph, and compare onnxruntime with torch on `batch`.

    batch: a tensor, a tuple of tensors or a dict of tensors (inputs.py), named in the graph as
    inputs.names says. Token inputs and their masks (integer or bool parts of two or more dimensions)
    keep their sequence axis dynamic where the model allows it: the file must match torch on the batch
    one token shorter too, else it is exported again with that axis fixed.
    The TorchScript exporter (dynamo=False) is used: about 100x faster on small models here than the
    dynamo exporter, and parity is checked on every export either way. nn.MultiheadAttention exports
    as LeanMultiheadAttention, the rest of attention on its composite path (see plain_attention). The
    inputs keep the batch's dtypes (int64 tokens stay int64).
    output: for a forward that returns a ModelOutput, dict or tuple, the field that is the output
    (outputs.pick; a Picked module carries its own). The graph has that one output, named after its
    field (e.g. "logits"), else "output".
    """
    if isinstance(module, Picked):
        module, output = module.module, module.field
    module = module.cpu().eval()
    batch = _ordered(module, inputs.to_device(batch, torch.device("cpu")))
    path.parent.mkdir(parents=True, exist_ok=True)
    named = dict(zip(inputs.names(batch), inputs.parts(batch)))
    sequence = [n for n, t in named.items() if inputs.is_sequence(t)]
    with torch.no_grad(), plain_attention():
        output = field_of(inputs.call(module, batch), output)  # None: forward returns one tensor
    # In eval mode: the exporter restores the mode of what it was given, the wrapped module's included.
    exported = module if output is None else _Positional(module, batch, output).eval()
    out_name = output if isinstance(output, str) else OUTPUT_NAME
    _export(exported, batch, path, sequence, out_name)
    shorter = _shorter(batch, sequence)
    if shorter is not None:
        try:
            ok = _parity(module, shorter, path, rtol, atol, output)[0]
        except Exception:
            ok = False
        if not ok:
            log.debug("%s: the sequence axis cannot vary; exporting it fixed", path.name)
            sequence = []
            _export(exported, batch, path, sequence, out_name)
    graph = _graph_inputs(path)
    for name, t in named.items():
        wanted = str(t.numpy().dtype)
        if name in graph and graph[name] != wanted:
            raise TrialError(
                f"ONNX export changed the dtype of input {name!r} from {wanted} to {graph[name]}; feed the model {graph[name]} or cast inside forward"
            )
    # The reference is the user's module itself, with torch's own attention, so parity covers the lean copy too.
    ok, diff = _parity(module, batch, path, rtol, atol, output)
    if not ok:
        raise TrialError(
            f"ONNX parity failed: onnxruntime and torch outputs differ by up to {diff:.3g} on a batch of {inputs.feed_len(inputs.feed(batch))}"
        )
    shapes = {n: ("batch", *(("sequence" if i == 1 and n in sequence else d) for i, d in enumerate(t.shape) if i > 0)) for n, t in named.items()}
    described = {n: {"dtype": graph.get(n, str(t.numpy().dtype)), "shape": list(shapes[n])} for n, t in named.items()}
    first = next(iter(named))
    return ExportReport(path, diff, described[first]["dtype"], tuple(shapes[first]), described, out_name)
