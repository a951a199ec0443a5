"""Before a trial ships: its recorded file is trusted, and the copy reproduces the recorded metric."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from effsearch import record
from effsearch.errors import ExportError
from effsearch.results.front import FrontRow

__all__ = ["FP32_TOLERANCE", "TOLERANCE", "Verified", "tolerance", "source_artifact", "verify_copy"]

# fp32: the same file, the same onnxruntime kernels and thread count as when the study measured it, so
# the metric must come back exactly (1e-6 leaves room for float printing only).
FP32_TOLERANCE = 1e-6
# fp16 and int8: onnxruntime picks quantized and half-precision kernels by the CPU's instruction set
# (AVX2, AVX-512, VNNI), whose rounding and accumulation order differ, so a check on another machine than
# the one that measured can move a continuous metric in its last digits. 1e-4 allows that and is still
# smaller than one changed prediction in a validation set of up to 10,000 samples.
TOLERANCE = 1e-4
def tolerance(precision: str) -> float:
    """How far the re-measured metric may be from the recorded one (relative once the metric exceeds 1)."""
    return FP32_TOLERANCE if precision == "fp32" else TOLERANCE


def source_artifact(study: optuna.Study, row: FrontRow) -> Path:
    """The trial's recorded ONNX file, refused unless it lies inside the study's artifact directory.

    The check keeps an edited (or shared, untrusted) storage from making export copy any file it names.
    """
    meta = record.read_meta(study)
    if not row.onnx:
        raise ExportError(f"trial {row.trial} recorded no ONNX file; choose another trial")
    if not meta.artifacts:
        raise ExportError(f"study {study.study_name!r} records no artifact directory, so trial {row.trial}'s file cannot be trusted")
    root = Path(meta.artifacts).resolve()
    src = Path(row.onnx).resolve()
    if not src.is_relative_to(root):
        raise ExportError(
            f"trial {row.trial}'s recorded file {row.onnx} lies outside the study's artifact directory {root}; "
            "refusing to export it (was the storage edited?)"
        )
    if not src.is_file():
        raise ExportError(f"trial {row.trial}'s file {src} is missing; were the study's artifacts moved or deleted?")
    return src


def _validation(uf: Any) -> Any:
    """The validation set, from data() called twice: a split that changes from call to call is refused
    (UserFileError naming the fix), as `tune` refuses it, rather than verified on samples trained on."""
    from effsearch.measure.metric import Streamed
    from effsearch.userfile import load_data

    _, val = load_data(uf)
    return Streamed(val)


@dataclass(frozen=True, kw_only=True)
class Verified:
    """The verification of one copied model, as the card records it."""

    metric: str
    value: float
    recorded: float
    difference: float
    tolerance: float
    samples: int
    threads: int
    user_file_changed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "value": self.value,
            "recorded": self.recorded,
            "difference": self.difference,
            "tolerance": self.tolerance,
            "tolerance_is": "absolute, or relative to the metric once its size exceeds 1",
            "samples": self.samples,
            "threads": self.threads,
            "user_file_changed": self.user_file_changed,
        }


def verify_copy(copy: Path, row: FrontRow, *, uf: Any, meta: record.StudyMeta, metric_key: str) -> Verified:
    """Run the copy in a fresh onnxruntime session over the whole validation set; refuse a different metric."""
    from effsearch.measure.metric import ort_metric
    from effsearch.userfile import default_metric

    if metric_key not in row.metrics:
        raise ExportError(f"trial {row.trial} recorded no {metric_key!r} to verify against")
    recorded = float(row.metrics[metric_key])
    sha_changed = bool(meta.user_file_sha256) and uf.sha256 != meta.user_file_sha256
    data = _validation(uf)
    threads = meta.latency.threads
    try:
        verified = float(ort_metric(copy, data, uf.registration.metric or default_metric, threads=threads))
    except Exception as exc:
        raise ExportError(f"trial {row.trial}'s model does not run on {uf.path.name}'s validation set: {type(exc).__name__}: {exc}") from exc
    tol = tolerance(row.precision)
    allowed = tol * max(1.0, abs(recorded))
    diff = abs(verified - recorded)
    if not diff <= allowed:
        why = f"{uf.path.name} changed since the study" if sha_changed else f"{uf.path.name}'s data differ from the study's"
        raise ExportError(
            f"trial {row.trial} scores {metric_key} {verified:.6g} on the validation set, not the recorded {recorded:.6g} "
            f"(difference {diff:.3g} > {allowed:.3g}); {why}? Nothing was written"
        )
    return Verified(
        metric=metric_key, value=verified, recorded=recorded, difference=diff, tolerance=tol,
        samples=len(data), threads=threads, user_file_changed=sha_changed,
    )
