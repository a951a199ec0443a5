"""Whether a failure making or measuring a precision would repeat for this model whatever the training.

Structural: ONNX or onnxruntime refused the graph (an operator without a kernel, a checker error, the
quantizer failing on it). Transient: anything of the machine (a full disk, memory) or of the user's code
(a metric that raised): trying again elsewhere may work, so such a failure never gives a value up.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["is_structural"]

_GRAPH_PACKAGES = ("onnx", "onnxruntime")


def _package_dirs() -> list[Path]:
    dirs = []
    for name in _GRAPH_PACKAGES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            dirs.append(Path(module.__file__).resolve().parent)
    return dirs


def _raised_in(exc: BaseException, dirs: list[Path]) -> bool:
    """Whether the innermost frame of exc's traceback lies in one of `dirs`."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    path = Path(tb.tb_frame.f_code.co_filename).resolve()
    return any(path.is_relative_to(d) for d in dirs)


def is_structural(exc: BaseException) -> bool:
    """True where exc (or what caused it) is ONNX's or onnxruntime's refusal of the graph, or a TrialError
    marked structural; False for errors of the machine (OSError, MemoryError) or of the user's code."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    if any(isinstance(e, (OSError, MemoryError)) for e in chain):
        return False
    if any(getattr(e, "structural", None) for e in chain):
        return True
    dirs = _package_dirs()
    for e in chain:
        if type(e).__module__.split(".")[0] in _GRAPH_PACKAGES or isinstance(e, NotImplementedError) or _raised_in(e, dirs):
            return True
    return False
