"""The latency-target base, declared with the other plugin kinds in effsearch.plugins.kinds."""

from __future__ import annotations

from effsearch.plugins.kinds import LatencyTarget

__all__ = ["LatencyTarget"]
