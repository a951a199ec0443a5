"""Rich tables of the front and of the failures (the CLI prints them).

The front table fits the console it is printed in: the columns a user decides on (trial, precision, prune,
the objectives, × dense, size) always, the others while they fit, given up in `_DROP`'s order; where even
the first alone do not fit a boxed table, a compact one holds them (no box, headers wrapped at their spaces,
two spaces between columns). `wide` shows every column and lets rich wrap and cut them where they do not fit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from effsearch.figures import ENERGY, FIGURES, FLOPS, LATENCY, PARAMS, SIZE, Figure
from effsearch.report.info import energy_source
from effsearch.results.front import FrontRow, StudyInfo, at_least

__all__ = ["front_table", "failures_table", "fmt_metric"]

# The columns a user may do without, the least used first: the training set-up, then figures no objective asks
# for. A column named here is given up before any named after it; the rest (trial, precision, prune, the
# objectives, × dense, size) are never given up.
_DROP = (
    "clip", "schedule", "batch", "lr", "ranks", "untrained ×", "run",
    ENERGY.key, PARAMS.key, FLOPS.key, LATENCY.key,
)


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


@dataclass(frozen=True)
class _Column:
    """One column of the front table: its header, its cells (one a row), and whether a user decides on it."""

    name: str  # what _DROP calls it
    head: str
    cells: tuple[str, ...]
    justify: str = "right"
    decides: bool = False

    def width(self, compact: bool) -> int:
        """Its natural width; compact: its header may wrap at its spaces."""
        heads = self.head.split() if compact else [self.head]
        return max(cell_len(s) for s in (*heads, *self.cells))


def _span(cols: Iterable[_Column], compact: bool) -> int:
    """The width a table of these columns takes: a box's edges and rules, or two spaces between columns."""
    cols = list(cols)
    gaps = 2 * (len(cols) - 1) if compact else 3 * len(cols) + 1
    return sum(c.width(compact) for c in cols) + gaps


def _fit(cols: list[_Column], width: int) -> tuple[list[_Column], bool]:
    """The columns shown in `width` cells, in their order, and whether the table is compact."""
    # A column _DROP does not name (a figure given a column later) goes first.
    optional = sorted((c for c in cols if not c.decides), key=lambda c: _DROP.index(c.name) if c.name in _DROP else -1)
    # Boxed while the columns a user decides on fit a box; compact where they fit only so.
    for compact in (False, True):
        kept = [c for c in cols if c.decides]
        if _span(kept, compact) > width:
            continue
        for c in reversed(optional):  # the most used first; the first that does not fit ends the run
            if _span([*kept, c], compact) > width:
                break
            kept.append(c)
        return [c for c in cols if any(c is k for k in kept)], compact
    return [c for c in cols if c.decides], True  # too narrow for them even so: rich wraps them


def _head(title: str, prefix: str, unit: str) -> str:
    """A column's title with the unit its cells share, said once: "size (kB)", "FLOPs (M)", "latency ms"."""
    if unit and any(w.startswith(unit) for w in title.split()):  # the title names the unit: add the prefix only
        return f"{title} ({prefix})" if prefix else title
    return f"{title} ({prefix}{unit})" if prefix + unit else title


def _scaled(values: list[Any]) -> tuple[str, list[str]]:
    """One SI prefix for a column (its largest value's) and the values in it: ("k", ["412", "39"])."""
    top = max((abs(float(v)) for v in values if v is not None), default=0.0)
    factor, prefix = next(((f, p) for f, p in ((1e9, "G"), (1e6, "M"), (1e3, "k")) if top >= f), (1.0, ""))
    digits = 2 if top / factor < 10 else 1 if top / factor < 100 else 0
    return prefix, ["-" if v is None else f"{float(v) / factor:,.{digits}f}" for v in values]


def _figure_column(info: StudyInfo, f: Figure, rows: list[FrontRow]) -> _Column:
    """A fixed figure's column; an energy figure's title says where its numbers come from."""
    if f.number == "si":
        prefix, cells = _scaled([r.metrics.get(f.key) for r in rows])
        cells = [at_least(r.metrics, f.key) + c for r, c in zip(rows, cells)]
    else:
        prefix, cells = "", [format(float(r.metrics.get(f.key, 0)), f.number) for r in rows]
    head = _head(str(f.column), prefix, f.unit)
    if f.energy:
        head += f" ({energy_source(info, f.key)})"
    return _Column(f.key, head, tuple(cells), decides=f.key in info.objectives or f is SIZE)


def _columns(info: StudyInfo, rows: list[FrontRow], knee: int | None) -> list[_Column]:
    """Every column of the front table, in the order shown."""
    def col(name: str, cells: Iterable[str], justify: str = "right", decides: bool = False) -> _Column:
        return _Column(name, name, tuple(cells), justify, decides)

    def trial(r: FrontRow) -> str:
        mark = " (baseline)" if r.baseline else (" (knee)" if r.trial == knee else "")
        if r.within_noise:
            mark += " ≈" + ",".join(map(str, r.within_noise))  # cannot be told apart from these
        return f"{r.trial}{mark}"

    params = [r.params for r in rows]
    cols = [
        col("trial", map(trial, rows), decides=True),
        col("run", (str(r.run) for r in rows)),
        col("precision", (r.precision for r in rows), "left", decides=True),
        col("prune", ("-" if r.prune is None else f"{r.prune:.2f}" for r in rows), decides=True),
        col("batch", (str(p.get("batch_size")) for p in params)),
        col("lr", (f"{float(p.get('lr', 0)):.2g}" for p in params)),
        col("schedule", (str(p.get("lr_schedule")) for p in params), "left"),
        col("clip", (_num(p.get("clip_norm")) for p in params)),
        col("ranks", (str(p.get("world_size")) for p in params)),
        col(info.metric_key, (fmt_metric(r.metrics.get(info.metric_key)) for r in rows), decides=True),
    ]
    for f in (f for f in FIGURES.values() if f.column is not None):
        cols.append(_figure_column(info, f, rows))
        if f is LATENCY:  # the latency's ratios to the dense model follow it
            cols.append(col("× dense", map(_vs_dense, rows), decides=True))
            cols.append(col("untrained ×", (_ratio(r.untrained) for r in rows)))
    # Objectives the fixed columns do not show (throughput_sps, infer_energy_mj, train_s, ...): one column each.
    fixed = {f.key for f in FIGURES.values() if f.column is not None}
    for key in (o for o in info.objectives if o not in fixed and o != info.metric_key):
        cols.append(col(key, (_figure(r.metrics.get(key)) for r in rows), decides=True))
    return cols


def _table(cols: list[_Column], compact: bool, title: str, caption: str | None, into: Table | None = None) -> Table:
    """A rich table of these columns: boxed, or compact (a rule under headers wrapped to the widest cell or word)."""
    table = into or (
        Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0, 0, 1)) if compact else Table()
    )
    table.title, table.caption = title, caption
    table.title_justify = table.caption_justify = "left"
    for c in cols:
        table.add_column(c.head, justify=c.justify, width=c.width(compact) if compact else None)
    for i in range(len(cols[0].cells) if cols else 0):
        table.add_row(*(c.cells[i] for c in cols))
    return table


class _Fitting(Table):
    """Every column of the front table; printed, the columns that fit the console's width."""

    def __init__(self, cols: list[_Column], title: str, caption: str | None) -> None:
        super().__init__()
        _table(cols, False, title, caption, into=self)
        self._front = (cols, title, caption)

    def _fitted(self, width: int) -> Table:
        cols, title, caption = self._front
        return _table(*_fit(cols, width), title, caption)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self._fitted(options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self._fitted(options.max_width))


def front_table(
    info: StudyInfo, rows: list[FrontRow], knee: int | None = None, *, width: int | None = None, wide: bool = False
) -> Table:
    """The front as a table; "prune" is the share the run removed (prune_achieved), not the share asked.

    width: the cells it may take (None: the width of the console it is printed in); wide: every column,
    wrapped by rich where they do not fit.
    """
    cols = _columns(info, rows, knee)
    title = f"Pareto front of {info.name}: {len(rows)} trial(s)"
    if any("latency_first_ms" in r.metrics for r in rows):
        title += "; latency re-measured together (≈: within noise of)"
    caption = "\n".join(f"! trial {r.trial}: {r.speedup_flag}" for r in rows if r.speedup_flag) or None
    if wide:
        return _table(cols, False, title, caption)
    if width is None:
        return _Fitting(cols, title, caption)
    return _table(*_fit(cols, width), title, caption)


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
