"""Which trial to ship: by number, the knee of the front, or the best trial within stated limits."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from effsearch import record
from effsearch.constraints import Constraints
from effsearch.errors import ExportError
from effsearch.figures import LATENCY
from effsearch.results.front import FrontRow, baseline, front_rows, knee, shown, shown_rows, study_info

__all__ = ["pick_trial", "pick_knee", "pick_within"]


def pick_trial(study: optuna.Study, number: int) -> FrontRow:
    """The completed trial `number` with the figures shown for it, or an error saying why it cannot be shipped."""
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
    return shown_rows(study)[number]


def pick_knee(study: optuna.Study) -> FrontRow:
    """The knee of the front (PRODUCT.md: nearest the utopia point in objective space scaled to [0, 1])."""
    row = knee(study)
    if row is None:
        raise ExportError(f"study {study.study_name!r} has no completed trial, so no front to pick from; run `effsearch tune` first")
    return row


def pick_within(study: optuna.Study, limits: Constraints) -> FrontRow:
    """The trial with the best metric among those within `limits`, preferring the Pareto front on ties.

    Limits on objectives (latency, the metric) keep the answer on the front: a trial that dominates a
    feasible one is feasible too. A size limit can leave only dominated trials; those count as well.
    """
    info = study_info(study)
    key, direction = info.metric_key, info.metric_direction
    seen = shown(study)  # a figure as shown (re-measured where in force) decides a limit
    base = None
    if limits.max_metric_drop is not None:
        b = baseline(study, seen)
        if b is None or key not in b.metrics:
            raise ExportError(
                f"study {study.study_name!r} has no completed dense baseline to measure a metric drop from; "
                "use --max-latency-ms/--max-size-mb, --pick knee or --trial N"
            )
        base = float(b.metrics[key])
    rows = list(seen.rows.values())
    if not rows:
        raise ExportError(f"study {study.study_name!r} has no completed trial; run `effsearch tune` first")
    on_front = {r.trial for r in front_rows(study, seen)}
    scored = [(r, limits.checks(r.metrics, key, base, direction)) for r in rows]
    inside = [r for r, checks in scored if all(c.met for c in checks)]
    if not inside:
        closest = sorted(scored, key=lambda s: (sum(c.relative for c in s[1]), s[0].trial))[:3]
        listed = "; ".join(f"trial {r.trial} ({', '.join(c.describe() for c in checks if not c.met)})" for r, checks in closest)
        raise ExportError(f"no trial meets {limits.describe(key)}; closest: {listed}; relax a limit or pick with --trial N")
    sign = -1.0 if direction == "maximize" else 1.0
    return min(
        inside,
        key=lambda r: (
            sign * float(r.metrics.get(key, 0.0)),
            r.trial not in on_front,
            float(r.metrics.get(LATENCY.key, 0.0)),
            r.trial,
        ),
    )
