"""onnxruntime sessions as effsearch runs them: fixed threads, sequential execution, quiet logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["ort_session"]


def ort_session(path: str | Path, threads: int = 1, providers: list[str] | None = None) -> Any:
    """An onnxruntime session with a fixed intra-op thread count (latency depends on it)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"])
