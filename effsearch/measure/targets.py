"""The latency-target plugin interface: an onnxruntime execution provider to time the artifact on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

__all__ = ["LatencyTarget"]


class LatencyTarget(ABC):
    kind: ClassVar[str] = "latency_target"
    name: ClassVar[str]
    priority: ClassVar[int] = 0

    @classmethod
    def unavailable(cls) -> str | None:
        """Why the target cannot be used on this machine, or None when it can."""
        return None

    @abstractmethod
    def providers(self) -> list[str]:
        """onnxruntime providers, in order of preference."""
