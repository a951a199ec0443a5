"""Whether a point's compression reaches its artifact: its latency and FLOPs against the dense model's.

Every point is compared with its dense counterpart: the baseline run's trial at the same precision (so
int8 is compared with dense int8, not with fp32). A pruned point is flagged when it runs slower than that
counterpart, or when the share of latency it saves is under half the share of FLOPs pruning removed (FLOPs
halved, latency cut by less than a quarter), with the likely cause where it is known: channel counts left
unaligned to the runtime's kernels, or a precision that has no fast kernels for the model's ops here
(the dense model at that precision is slower than at fp32).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from effsearch.figures import FLOPS, LATENCY

__all__ = ["SLOWER", "SHORT", "Speedup", "dense_counterparts", "speedup"]

SLOWER = "slower than the dense model at the same precision"
SHORT = "latency saved is under half the FLOPs pruning removed"


@dataclass(frozen=True)
class Speedup:
    latency_ratio: float  # latency / the dense counterpart's latency (same precision, same measurement)
    flop_ratio: float | None  # FLOPs / the dense counterpart's FLOPs
    flag: str | None  # why the compression does not reach the artifact; None when it does

    def metrics(self) -> dict[str, Any]:
        return {"latency_vs_dense": self.latency_ratio, "flop_ratio": self.flop_ratio}


def dense_counterparts(rows: list[Any]) -> dict[str, Any]:
    """The baseline run's rows by precision (its fp32 trial and the precisions made from it)."""
    base = next((r for r in rows if r.baseline), None)
    if base is None:
        return {}
    return {r.precision: r for r in rows if r.run == base.run}


def _latency(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float] | None:
    """Both latencies from one measurement: re-measured together if both were, else both first figures."""
    if a.get("remeasured_on") is not None and a.get("remeasured_on") == b.get("remeasured_on"):
        x, y = a.get(LATENCY.key), b.get(LATENCY.key)
    else:
        x, y = a.get("latency_first_ms", a.get(LATENCY.key)), b.get("latency_first_ms", b.get(LATENCY.key))
    if x is None or y is None or float(y) <= 0:
        return None
    return float(x), float(y)


def _cause(precision: str, round_to: int | None, dense: dict[str, Any]) -> str:
    causes = []
    if round_to is None or round_to <= 1:
        causes.append("pruned channel counts not rounded to the runtime's kernel blocks (round_to off)")
    fp32 = dense.get("fp32")
    if precision != "fp32" and fp32 is not None and precision in dense:
        pair = _latency(dense[precision].metrics, fp32.metrics)
        if pair is not None and pair[0] > pair[1]:
            causes.append(f"{precision} has no fast kernels for this model's ops here (dense {precision} runs at "
                          f"{pair[0] / pair[1]:.2f}x dense fp32)")
    return "; likely cause: " + " and ".join(causes) if causes else ""


def speedup(row: Any, dense: dict[str, Any], round_to: int | None) -> Speedup | None:
    """The row against its dense counterpart; None where the study has none (no baseline at its precision)."""
    counterpart = dense.get(row.precision)
    if counterpart is None:
        return None
    pair = _latency(row.metrics, counterpart.metrics)
    if pair is None:
        return None
    lat = pair[0] / pair[1]
    flops, dense_flops = row.metrics.get(FLOPS.key), counterpart.metrics.get(FLOPS.key)
    flop = float(flops) / float(dense_flops) if flops and dense_flops else None
    flag = None
    if float(getattr(row, "prune", None) or 0.0) > 0 and row.trial != counterpart.trial:  # pruned: what was built
        if lat > 1.0:
            flag = f"{SLOWER} ({lat:.2f}x)"
        elif flop is not None and flop < 1.0 and (1.0 - lat) < 0.5 * (1.0 - flop):
            flag = f"{SHORT} (latency {lat:.2f}x, FLOPs {flop:.2f}x)"
        if flag is not None:
            flag += _cause(row.precision, round_to, dense)
    return Speedup(lat, flop, flag)
