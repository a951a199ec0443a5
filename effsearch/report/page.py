"""What the report page writes as text: the front table's head and rows, the baseline, the limits' ranges,
the hypervolume's ranges and the notes on curves and importance (html.py draws the figures and renders the page)."""

from __future__ import annotations

import math
from typing import Any

from effsearch.figures import FIGURES, LATENCY
from effsearch.report.data import FrontEntry, Report
from effsearch.report.info import metric_label
from effsearch.results.front import StudyInfo, at_least

__all__ = [
    "COLUMNS", "baseline", "clean", "curves", "front_head", "front_row", "hypervolume", "importance_notes", "limits", "num",
    "pruning",
]

# The figures the front table gives a column, in the catalog's order.
COLUMNS = tuple(k for k, f in FIGURES.items() if f.shown)


def num(v: Any, digits: int = 4) -> str:
    """A figure in a cell: an integer under a million in full, others to `digits` significant digits."""
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int) and abs(v) < 1e6:
        return f"{v:,}"
    v = float(v)
    return str(v) if not math.isfinite(v) else ("0" if v == 0 else f"{v:.{digits}g}")


def clean(v: Any) -> Any:
    """None for a non-finite float (JSON has no NaN), else the value."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def pruning(built: float | None, asked: Any) -> str:
    """The pruning built, and the share asked where it differs (pruning rounds channel counts)."""
    if built is None:
        return "-"
    text = num(built, 3)
    if asked is not None and num(float(asked), 3) != text:
        text += f" (asked {num(float(asked), 3)})"
    return text


def curves(r: Report) -> dict[str, Any] | None:
    """What the page says about the curves, or None where no run recorded one."""
    if not r.curves:
        return None
    return {"runs": len(r.curves), "stopped": sum(bool(c.stopped) for c in r.curves), "epochs": sum(len(c.epochs) for c in r.curves)}


def limits(r: Report) -> dict[str, Any]:
    """The two limits as ranges spanning the front; each starts at its top, where nothing is hidden."""
    lats = [float(e.row.metrics[LATENCY.key]) for e in r.front if clean(e.row.metrics.get(LATENCY.key)) is not None]
    drops = [e.drop for e in r.front if e.drop is not None and math.isfinite(e.drop)]
    out: dict[str, Any] = {"latency": None, "drop": None}
    if lats:
        out["latency"] = {"max": repr(max(lats)), "shown": num(max(lats))}
    if drops:
        lo, hi = min(drops), max(drops)
        base = float(r.baseline.metrics.get(r.info.metric_key, 1.0)) if r.baseline else 1.0
        lo -= max(0.05 * (hi - lo), 1e-3 * max(1.0, abs(base)))  # room to exclude every trial
        out["drop"] = {"min": repr(lo), "max": repr(hi), "shown": num(hi)}
    return out


def front_head(info: StudyInfo) -> list[str]:
    head = ["trial", "run", "precision", "prune (built)", "batch", "lr", "schedule", "clip", "ranks"]
    head += [metric_label(info, info.metric_key), "drop from baseline", *(metric_label(info, k) for k in COLUMNS)]
    return head + ["latency × dense (same precision)", "FLOPs × dense", "untrained latency (× dense)", "energy source", "export"]


def front_row(r: Report, e: FrontEntry) -> dict[str, Any]:
    row, p, m = e.row, e.row.params, e.row.metrics
    lat = clean(m.get(LATENCY.key))
    cells = [
        row.run, row.precision, pruning(row.prune, p.get("prune_ratio")), num(p.get("batch_size")), num(p.get("lr"), 3),
        p.get("lr_schedule", "-"), num(p.get("clip_norm"), 3), num(p.get("world_size")), num(m.get(r.info.metric_key)),
        "-" if e.drop is None else num(e.drop), *(at_least(m, k) + num(m.get(k)) for k in COLUMNS),
        num(m.get("latency_vs_dense"), 3), num(m.get("flop_ratio"), 3),
        num(row.untrained["latency_ratio"], 3) if row.untrained else "-", m.get("energy_source", r.info.energy_source),
    ]
    tags = [t for t, on in (("baseline", row.baseline), ("knee", e.knee)) if on]
    if row.within_noise:
        tags.append("within noise of " + ", ".join(map(str, row.within_noise)))
    if row.speedup_flag:
        tags.append("compression does not reach the artifact: " + row.speedup_flag)
    return {"trial": row.trial, "tags": tags, "cells": cells, "command": e.command,
            "latency": "" if lat is None else lat, "drop": "" if e.drop is None else e.drop}


def baseline(r: Report) -> dict[str, Any] | None:
    b = r.baseline
    if b is None:
        return None
    on_front = any(e.row.trial == b.trial for e in r.front)
    keys = [k for k in (r.info.metric_key, *COLUMNS) if k in b.metrics]
    metrics = "; ".join(f"{metric_label(r.info, k)}: {num(b.metrics.get(k))}" for k in keys)
    where = "on the Pareto front (marked in the table)" if on_front else "not on the Pareto front"
    return {"trial": b.trial, "run": b.run, "precision": b.precision, "metrics": metrics, "where": where}


def hypervolume(r: Report) -> dict[str, Any]:
    h = r.hypervolume
    ranges = ", ".join(f"{o}: {num(-lo if d == 'maximize' else lo)} to {num(-hi if d == 'maximize' else hi)}"
                       for o, d, lo, hi in zip(r.info.objectives, r.info.directions, h.lo, h.hi))
    return {"ranges": ranges if len(h.trials) >= 2 else None, "reference": f"{h.reference:g}", "note": h.note or "no hypervolume"}


def importance_notes(r: Report) -> list[str]:
    notes = [i.note for i in r.importances if i.note]
    # One note for all objectives when they share it.
    return notes[:1] if len(set(notes)) == 1 and len(notes) == len(r.importances) else notes
