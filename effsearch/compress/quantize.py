"""Make every precision of an exported fp32 ONNX model with onnxruntime's own tools."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from effsearch.errors import TrialError
from effsearch.inputs import Feed, as_feed

__all__ = ["INT8_STATIC", "INT8_VARIANTS", "Int8Variant", "make_precision", "quantize_int8_static"]

log = logging.getLogger(__name__)


class _DropPreprocessHint(logging.Filter):
    # onnxruntime asks for quant_pre_process even when the model went through it, and warns once per
    # LayerNormalization that its 1-D weight has no channel axis (it quantizes it per tensor instead).
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "pre-processing before quantization" not in message and "is out-of-range for weight" not in message


logging.getLogger().addFilter(_DropPreprocessHint())


class _Calibration:
    """onnxruntime CalibrationDataReader over a list of input batches."""

    def __init__(self, batches: Sequence[np.ndarray | Feed]) -> None:
        self._it = iter([as_feed(b) for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _fp16(src: Path, dst: Path) -> None:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    # keep_io_types: the caller keeps feeding and reading float32; the Casts it inserts for that are
    # appended at the end of the graph, so sort it again. LayerNormalization stays float32: its variance
    # loses precision in fp16, and onnxruntime 1.32 segfaulted creating a CPU session (in its
    # NchwcTransformer) for torch's nn.MultiheadAttention export with fp16 LayerNormalization.
    blocked = [*DEFAULT_OP_BLOCK_LIST, "LayerNormalization"]
    converted = OnnxModel(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True, op_block_list=blocked))
    converted.topological_sort()
    onnx.save(converted.model, str(dst))


def _int8_dynamic(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


@dataclass(frozen=True)
class Int8Variant:
    """One post-training static int8 recipe of onnxruntime's quantize_static (names as onnxruntime spells them)."""

    quant_format: str = "QDQ"  # or "QOperator"
    per_channel: bool = True
    activation_type: str = "QUInt8"  # or "QInt8"
    calibrate_method: str = "MinMax"  # or "Entropy", "Percentile"

    @property
    def label(self) -> str:
        weights = "per-channel" if self.per_channel else "per-tensor"
        return f"{self.quant_format}, {weights} weights, {self.activation_type} activations, {self.calibrate_method}"


# The recipe of the int8_static precision, and of the static int8 precisions a space may add.
INT8_STATIC = Int8Variant()
INT8_VARIANTS = {"int8_static": INT8_STATIC, "int8_static_per_tensor": Int8Variant(per_channel=False)}


def quantize_int8_static(src: Path, dst: Path, calibration: Sequence[np.ndarray], variant: Int8Variant = INT8_STATIC) -> None:
    """Static int8 of `src` to `dst` by `variant`, calibrated on `calibration` (input batches)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = dst.with_name(dst.stem + ".pre.onnx")
    try:
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
    except Exception as exc:  # pre-processing is an optimisation; quantize without it if it fails
        log.debug("quant_pre_process failed (%s); quantizing the plain export", exc)
        pre = src
    try:
        quantize_static(
            str(pre),
            str(dst),
            _Calibration(calibration),
            quant_format=QuantFormat[variant.quant_format],
            activation_type=QuantType[variant.activation_type],
            weight_type=QuantType.QInt8,
            per_channel=variant.per_channel,
            calibrate_method=CalibrationMethod[variant.calibrate_method],
        )
    finally:
        if pre != src:
            pre.unlink(missing_ok=True)


def make_precision(fp32_path: Path, precision: str, calibration: Sequence[np.ndarray]) -> Path:
    """Write `model.<precision>.onnx` beside the fp32 model and return its path (fp32 returns the input).

    calibration: input batches from the training set, used by the static int8 precisions only.
    """
    if precision == "fp32":
        return fp32_path
    dst = fp32_path.with_name(f"model.{precision}.onnx")
    try:
        if precision == "fp16":
            _fp16(fp32_path, dst)
        elif precision == "int8_dynamic":
            _int8_dynamic(fp32_path, dst)
        elif precision in INT8_VARIANTS:
            quantize_int8_static(fp32_path, dst, calibration, INT8_VARIANTS[precision])
        else:
            known = ", ".join(("fp32", "fp16", "int8_dynamic", *INT8_VARIANTS))
            raise TrialError(f"unknown precision {precision!r}; use one of {known}")
        onnx.checker.check_model(str(dst))
    except TrialError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise TrialError(f"{precision} conversion failed: {type(exc).__name__}: {first}") from exc
    return dst
