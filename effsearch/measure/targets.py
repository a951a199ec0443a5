"""The latency-target plugin interface: an onnxruntime execution provider to time the artifact on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

__all__ = ["LatencyTarget"]


class LatencyTarget(ABC):
    """Where latency is measured: onnxruntime providers, in order of preference.

    priority: among usable targets, the highest is chosen.
    """

    kind: ClassVar[str] = "latency_target"
    name: ClassVar[str]
    priority: ClassVar[int] = 0

    @classmethod
    def unavailable(cls) -> str | None:
        """Why the target cannot be used on this machine, or None when it can."""
        return None

    @classmethod
    def describe(cls) -> str | None:
        """Optional: a short note shown by `effsearch plugins`."""
        return None

    @abstractmethod
    def providers(self) -> list[str]:
        """onnxruntime providers, in order of preference."""
