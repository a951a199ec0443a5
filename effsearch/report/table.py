"""Rich tables of the front and of the failures (the CLI prints them)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from effsearch.results.front import FrontRow, StudyInfo, at_least

__all__ = ["front_table", "failures_table", "fmt_metric"]


def _num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1e5 or abs(v) < 1e-3:
            return f"{v:.{digits}g}"
        return f"{v:.{digits}g}" if abs(v) < 1 else f"{v:,.{max(0, digits - len(str(int(abs(v)))))}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _si(v: Any, unit: str) -> str:
    if v is None:
        return "-"
    v = float(v)
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= factor:
            return f"{v / factor:.2f} {prefix}{unit}"
    return f"{v:.0f} {unit}"


def _ratio(untrained: dict[str, Any] | None) -> str:
    """The untrained latency as a ratio to the dense model's: what was known before training."""
    return "-" if not untrained else f"{float(untrained['latency_ratio']):.2f}"


def _vs_dense(r: FrontRow) -> str:
    """The latency as a ratio to the dense model's at the same precision; "!" where compression falls short."""
    v = r.metrics.get("latency_vs_dense")
    return "-" if v is None else f"{float(v):.2f}" + (" !" if r.speedup_flag else "")


def _figure(v: Any) -> str:
    """A figure of any size: SI prefixes from a thousand up, four significant digits below."""
    return _si(v, "") if v is not None and abs(float(v)) >= 1e3 else ("-" if v is None else f"{float(v):.4g}")


def fmt_metric(v: Any) -> str:
    return "-" if v is None else f"{float(v):.4f}"


# The objectives front_table's fixed columns show.
_SHOWN = ("latency_ms", "flops", "param_count", "size_bytes", "energy_j")


def front_table(info: StudyInfo, rows: list[FrontRow], knee_trial: int | None = None) -> Table:
    """The front as a table; "prune" is the share the run removed (prune_achieved), not the share asked."""
    estimate = info.energy_source == "estimate"
    energy = "energy J (estimate)" if estimate else f"energy J ({info.energy_source})"
    remeasured = any("latency_first_ms" in r.metrics for r in rows)
    title = f"Pareto front of {info.name}: {len(rows)} trial(s)"
    if remeasured:
        title += "; latency re-measured together (≈: within noise of)"
    flagged = [f"! trial {r.trial}: {r.speedup_flag}" for r in rows if r.speedup_flag]
    table = Table(title=title, title_justify="left", caption="\n".join(flagged) or None, caption_justify="left")
    for col, justify in (
        ("trial", "right"), ("run", "right"), ("precision", "left"), ("prune", "right"), ("batch", "right"),
        ("lr", "right"), ("schedule", "left"), ("clip", "right"), ("ranks", "right"), (info.metric_key, "right"),
        ("latency ms", "right"), ("× dense", "right"), ("untrained ×", "right"), ("FLOPs", "right"), ("params", "right"), ("size", "right"), (energy, "right"),
    ):
        table.add_column(col, justify=justify)
    # Objectives the fixed columns do not show (throughput_sps, infer_energy_mj, train_s, ...): one column each.
    extra = [o for o in info.objectives if o not in _SHOWN and o != info.metric_key]
    for key in extra:
        table.add_column(key, justify="right")
    for r in rows:
        p, m = r.params, r.metrics
        mark = " (baseline)" if r.baseline else (" (knee)" if r.trial == knee_trial else "")
        if r.within_noise:
            mark += " ≈" + ",".join(map(str, r.within_noise))  # cannot be told apart from these
        table.add_row(
            f"{r.trial}{mark}", str(r.run), r.precision, "-" if r.prune is None else f"{r.prune:.2f}", str(p.get("batch_size")),
            f"{float(p.get('lr', 0)):.2g}", str(p.get("lr_schedule")), _num(p.get("clip_norm")), str(p.get("world_size")),
            fmt_metric(m.get(info.metric_key)), f"{float(m.get('latency_ms', 0)):.4f}", _vs_dense(r), _ratio(r.untrained), at_least(m, "flops") + _si(m.get("flops"), "FLOP"),
            _si(m.get("param_count"), ""), _si(m.get("size_bytes"), "B"), f"{float(m.get('energy_j', 0)):.2f}",
            *(_figure(m.get(k)) for k in extra),
        )
    return table


def failures_table(failed: list[tuple[int, int, dict[str, Any], str]]) -> Table:
    table = Table(title=f"Failed trials: {len(failed)}", title_justify="left")
    table.add_column("trial", justify="right")
    table.add_column("run", justify="right")
    table.add_column("precision")
    table.add_column("reason", overflow="fold")
    for number, run, params, reason in failed:
        # A reason quotes what failed (a path in brackets, say): text, never markup.
        table.add_row(str(number), str(run), str(params.get("precision", "-")), Text(reason))
    return table
