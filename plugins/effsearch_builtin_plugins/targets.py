"""Latency targets: onnxruntime's CPU provider always, CUDA where onnxruntime-gpu sees a GPU."""

from __future__ import annotations

from effsearch.plugins import LatencyTarget

__all__ = ["CpuTarget", "CudaTarget"]


class CpuTarget(LatencyTarget):
    """onnxruntime's CPU provider: always there."""

    name = "cpu"
    priority = 0

    def providers(self) -> list[str]:
        return ["CPUExecutionProvider"]


class CudaTarget(LatencyTarget):
    """onnxruntime-gpu's CUDA provider, falling back to the CPU for nodes it lacks."""

    name = "cuda"
    priority = 10

    @classmethod
    def unavailable(cls) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            return f"onnxruntime cannot be imported: {exc}"
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu on a machine with a GPU)"
        try:
            import torch

            if not torch.cuda.is_available():
                return "no CUDA device visible"
        except ImportError:
            pass
        return None

    def providers(self) -> list[str]:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
