"""Make every precision of an exported fp32 ONNX model with onnxruntime's own tools."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from effsearch.errors import TrialError
from effsearch.onnx_export import INPUT_NAME

__all__ = ["make_precision"]

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

    def __init__(self, batches: Sequence[np.ndarray]) -> None:
        self._it = iter([{INPUT_NAME: b} for b in batches])

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


def _int8_static(src: Path, dst: Path, calibration: Sequence[np.ndarray]) -> None:
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
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
        )
    finally:
        if pre != src:
            pre.unlink(missing_ok=True)


def make_precision(fp32_path: Path, precision: str, calibration: Sequence[np.ndarray]) -> Path:
    """Write `model.<precision>.onnx` beside the fp32 model and return its path (fp32 returns the input).

    calibration: input batches from the training set, used by int8_static only.
    """
    if precision == "fp32":
        return fp32_path
    dst = fp32_path.with_name(f"model.{precision}.onnx")
    try:
        if precision == "fp16":
            _fp16(fp32_path, dst)
        elif precision == "int8_dynamic":
            _int8_dynamic(fp32_path, dst)
        elif precision == "int8_static":
            _int8_static(fp32_path, dst, calibration)
        else:
            raise TrialError(f"unknown precision {precision!r}; use fp32, fp16, int8_dynamic or int8_static")
        onnx.checker.check_model(str(dst))
    except TrialError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise TrialError(f"{precision} conversion failed: {type(exc).__name__}: {first}") from exc
    return dst
