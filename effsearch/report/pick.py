"""Which trial to ship: by number, the knee of the front, or the best trial within stated limits."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from effsearch.constraints import Constraints, metric_drop
from effsearch.errors import ExportError
from effsearch import record
from effsearch.report.front import FrontRow, baseline, front_rows, knee, row_of, study_info

__all__ = ["describe", "pick_trial", "pick_knee", "pick_within"]


def describe(limits: Constraints, metric_key: str = "metric") -> str:
    """The limits as a reader would say them, e.g. "latency <= 0.02 ms, size <= 0.1 MB"."""
    parts = []
    if limits.max_latency_ms is not None:
        parts.append(f"latency <= {limits.max_latency_ms:g} ms")
    if limits.max_metric_drop is not None:
        parts.append(f"{metric_key} drop <= {limits.max_metric_drop:g} from the baseline")
    if limits.max_size_mb is not None:
        parts.append(f"size <= {limits.max_size_mb:g} MB")
    return ", ".join(parts) or "no limits"


def _complete(study: optuna.Study) -> list[FrontRow]:
    return [row_of(t) for t in record.read_all(study, states=(TrialState.COMPLETE,))]


def pick_trial(study: optuna.Study, number: int) -> FrontRow:
    """The completed trial `number`, or an error saying why it cannot be shipped."""
    trials = record.read_all(study)
    match = [t for t in trials if t.number == number]
    if not match:
        span = f"trials 0-{len(trials) - 1}" if trials else "no trials"
        raise ExportError(f"study {study.study_name!r} has no trial {number} ({span}); see `effsearch pareto`")
    t = match[0]
    if t.state != TrialState.COMPLETE:
        front = ", ".join(str(r.trial) for r in front_rows(study)) or "none"
        reason = f": {t.record.fail_reason}" if t.record.fail_reason else ""
        raise ExportError(f"trial {number} is {t.state.name}{reason}; choose a completed trial (front: {front})")
    return row_of(t)


def pick_knee(study: optuna.Study) -> FrontRow:
    """The knee of the front (PRODUCT.md: nearest the utopia point in objective space scaled to [0, 1])."""
    row = knee(study)
    if row is None:
        raise ExportError(f"study {study.study_name!r} has no completed trial, so no front to pick from; run `effsearch tune` first")
    return row


def _excess(row: FrontRow, limits: Constraints, base: float | None, direction: str, key: str) -> tuple[float, list[str]]:
    """How far a trial lies outside the limits (0 when inside), relative to each bound, and what it misses by."""
    m = row.metrics
    total, misses = 0.0, []
    if limits.max_latency_ms is not None:
        lat = float(m.get("latency_ms", float("inf")))
        if lat > limits.max_latency_ms:
            total += (lat - limits.max_latency_ms) / max(limits.max_latency_ms, 1e-12)
            misses.append(f"latency {lat:.4g} ms")
    if limits.max_metric_drop is not None and base is not None:
        drop = metric_drop(float(m.get(key, float("nan"))), base, direction)
        if not drop <= limits.max_metric_drop:
            total += (drop - limits.max_metric_drop) / max(abs(base), 1e-12)
            misses.append(f"{key} drop {drop:.4g}")
    if limits.max_size_mb is not None:
        size = float(m.get("size_bytes", float("inf"))) / 1e6
        if size > limits.max_size_mb:
            total += (size - limits.max_size_mb) / max(limits.max_size_mb, 1e-12)
            misses.append(f"size {size:.4g} MB")
    return total, misses


def pick_within(study: optuna.Study, limits: Constraints) -> FrontRow:
    """The trial with the best metric among those within `limits`, preferring the Pareto front on ties.

    Limits on objectives (latency, the metric) keep the answer on the front: a trial that dominates a
    feasible one is feasible too. A size limit can leave only dominated trials; those count as well.
    """
    info = study_info(study)
    key, direction = info.metric_key, info.metric_direction
    base = None
    if limits.max_metric_drop is not None:
        b = baseline(study)
        if b is None or key not in b.metrics:
            raise ExportError(
                f"study {study.study_name!r} has no completed dense baseline to measure a metric drop from; "
                "use --max-latency-ms/--max-size-mb, --pick knee or --trial N"
            )
        base = float(b.metrics[key])
    rows = _complete(study)
    if not rows:
        raise ExportError(f"study {study.study_name!r} has no completed trial; run `effsearch tune` first")
    on_front = {r.trial for r in front_rows(study)}
    scored = [(r, *_excess(r, limits, base, direction, key)) for r in rows]
    inside = [r for r, excess, _ in scored if excess == 0.0]
    if not inside:
        closest = sorted(scored, key=lambda s: (s[1], s[0].trial))[:3]
        listed = "; ".join(f"trial {r.trial} ({', '.join(misses)})" for r, _, misses in closest)
        raise ExportError(f"no trial meets {describe(limits, key)}; closest: {listed}; relax a limit or pick with --trial N")
    sign = -1.0 if direction == "maximize" else 1.0
    return min(
        inside,
        key=lambda r: (
            sign * float(r.metrics.get(key, 0.0)),
            r.trial not in on_front,
            float(r.metrics.get("latency_ms", 0.0)),
            r.trial,
        ),
    )
