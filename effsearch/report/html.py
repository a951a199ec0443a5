"""The study report as one self-contained HTML page: plotly figures drawn from report.info, tables from
report/page.py, and two limits (max metric drop from the baseline, max latency) that narrow the front in the
page; the page itself is templates/report.html.j2, with its CSS, its script and plotly.js inlined and its data
in JSON blocks."""

from __future__ import annotations

import html
import json
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader
from markupsafe import Markup

from effsearch.errors import EffsearchError
from effsearch.figures import LATENCY
from effsearch.report import page
from effsearch.report.data import Point, Report
from effsearch.report.info import metric_label
from effsearch.results.front import StudyInfo
from effsearch.space import CATALOG

__all__ = ["render_html"]

_FRONT, _FRONT_OUT = "#1f6fb4", "#a9c8e6"
_COLORS = {"dominated": "#9a9a9a", "infeasible": "#c9a227", "failed": "#d62728"}
_PARAM_LABELS = {name: spec.label for name, spec in CATALOG.items()}
# Trace order in every scatter; the page's script restyles the two front traces by these indices.
_TRACES = ("dominated", "infeasible", "failed", "front", "front_out", "baseline", "knee")
_LAYOUT = dict(template="plotly_white", margin=dict(l=70, r=20, t=50, b=50))


def _plotly() -> tuple[Any, Any, Any]:
    try:
        import plotly.graph_objects as go
        import plotly.io as pio
        from plotly.offline import get_plotlyjs
    except ImportError as exc:
        raise EffsearchError("the HTML report needs plotly, which effsearch installs: pip install plotly") from exc
    return go, pio, get_plotlyjs


@cache
def _env() -> Environment:
    loader = PackageLoader("effsearch.report", "templates")
    return Environment(loader=loader, autoescape=True, trim_blocks=True, lstrip_blocks=True)


def _asset(name: str) -> Markup:
    """A package file inlined as it is (CSS, JS), not read as template source."""
    env = _env()
    return Markup(env.loader.get_source(env, name)[0])


def _script_json(text: str) -> Markup:
    # Safe inside a <script> block: no "<" can end or open a tag there, and no line separators.
    return Markup(text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _axis(info: StudyInfo, key: str) -> str:
    better = "higher is better" if info.directions[info.objectives.index(key)] == "maximize" else "lower is better"
    return f"{metric_label(info, key)}, {better}"


def _hover(p: Point, x: str, y: str) -> str:
    tag = " (baseline)" if p.baseline else (" (knee)" if p.knee else "")
    prm = p.params
    asked = prm.get("prune_ratio")
    prune = f"prune {page.pruning(p.prune, asked)}" if p.state != "failed" else f"prune asked {page.num(asked, 3)}"
    lines = [f"trial {p.trial}{tag}: {p.state}",
             f"{prm.get('precision', '?')}, {prune}, {prm.get('world_size', '-')} rank(s)"]
    if p.values:
        lines.append(f"{x} {page.num(p.values.get(x))}, {y} {page.num(p.values.get(y))}")
    if p.reason:
        lines.append(f"failed: {p.reason[:120]}")
    return "<br>".join(html.escape(s) for s in lines)


def _scatter(go: Any, r: Report, x: str, y: str) -> tuple[Any, list[list[Any]]]:
    """One pair of objectives; also the front's points, which the page's limits split into two traces."""
    fig = go.Figure()

    def trace(name: str, pts: list[Point], marker: dict[str, Any], **kw: Any) -> None:
        fig.add_trace(go.Scatter(x=[p.values[x] for p in pts], y=[p.values[y] for p in pts], mode="markers", name=name,
                                 marker=marker, text=[_hover(p, x, y) for p in pts], hoverinfo="text", **kw))

    placed = [p for p in r.points if p.values and x in p.values and y in p.values]
    by = {s: [p for p in placed if p.state == s] for s in ("dominated", "infeasible", "failed", "front")}
    failed = sum(p.state == "failed" for p in r.points)
    unplaced = f", {failed - len(by['failed'])} unmeasured: see the table" if failed > len(by["failed"]) else ""
    trace(f"dominated ({len(by['dominated'])})", by["dominated"], dict(color=_COLORS["dominated"], size=7, opacity=0.7))
    trace(f"outside the search constraints ({len(by['infeasible'])})", by["infeasible"],
          dict(color=_COLORS["infeasible"], size=7, symbol="triangle-up"), visible=True if by["infeasible"] else "legendonly")
    trace(f"failed ({failed}{unplaced})", by["failed"], dict(color=_COLORS["failed"], size=9, symbol="x"))
    trace(f"Pareto front ({len(by['front'])})", by["front"], dict(color=_FRONT, size=12, line=dict(width=1, color="#0b3c66")))
    trace("front, outside the page limits", [], dict(color=_FRONT_OUT, size=12, symbol="circle-open", line=dict(width=2)))
    trace("dense baseline", [p for p in placed if p.baseline],
          dict(color="#f2b705", size=18, symbol="star", line=dict(width=1, color="#5a4500")))
    trace("knee", [p for p in placed if p.knee], dict(color="#111", size=22, symbol="diamond-open", line=dict(width=2, color="#111")))
    fig.update_layout(title=dict(text=f"{html.escape(x)} vs {html.escape(y)}", x=0.01), xaxis_title=_axis(r.info, x),
                      yaxis_title=_axis(r.info, y), height=440, legend=dict(font=dict(size=11)), template="plotly_white",
                      margin=dict(l=70, r=20, t=50, b=60))
    return fig, [[p.trial, page.clean(p.values[x]), page.clean(p.values[y]), _hover(p, x, y)] for p in by["front"]]


def _trial_plot(go: Any, r: Report) -> Any:
    """One objective: plotted against the trial number."""
    key = r.info.objectives[0]
    fig = go.Figure()
    for state, color in (("dominated", _COLORS["dominated"]), ("front", _FRONT)):
        pts = [p for p in r.points if p.state == state and p.values]
        fig.add_trace(go.Scatter(
            x=[p.trial for p in pts], y=[p.values[key] for p in pts], mode="markers", name=state,
            marker=dict(color=color, size=10), text=[_hover(p, "trial", key) for p in pts], hoverinfo="text",
        ))
    fig.update_layout(title=f"{key} by trial", xaxis_title="trial", yaxis_title=metric_label(r.info, key),
                      template="plotly_white", height=400)
    return fig


def _hv_fig(go: Any, r: Report) -> Any:
    h, k = r.hypervolume, len(r.info.objectives)
    fig = go.Figure(go.Scatter(x=list(h.trials), y=list(h.values), mode="lines+markers",
                               line=dict(shape="hv", color=_FRONT), name="hypervolume"))
    fig.update_layout(title=dict(text=f"Hypervolume after each completed trial (max {h.reference ** k:.3g})", x=0.01),
                      xaxis_title="trial", yaxis_title="hypervolume (scaled objectives)", height=360, **_LAYOUT)
    return fig


def _curves_fig(go: Any, r: Report) -> Any:
    """The validation metric after each epoch, one line per run; runs stopped early dashed, in red."""
    front_runs = {e.row.run for e in r.front}
    styles = {"completed": ("#b0b0b0", "solid"), "on the front": (_FRONT, "solid"), "stopped early": ("#d62728", "dash")}
    fig = go.Figure()
    shown: set[str] = set()
    for c in r.curves:
        group = "stopped early" if c.stopped else ("on the front" if c.run in front_runs else "completed")
        color, dash = styles[group]
        text = f"run {c.run} (trial {c.trial})" + (f"<br>{c.stopped}" if c.stopped else "")
        fig.add_trace(go.Scatter(
            x=list(c.epochs), y=list(c.metric), mode="lines+markers", name=group, legendgroup=group,
            showlegend=group not in shown, line=dict(color=color, dash=dash, width=1.5),
            marker=dict(size=5, symbol=["circle"] * (len(c.epochs) - 1) + ["x" if c.stopped else "circle"]),
            text=[text] * len(c.epochs), hovertemplate="%{text}<br>epoch %{x}: %{y:.4g}<extra></extra>",
        ))
        shown.add(group)
    fig.update_layout(title=dict(text=f"Validation {r.info.metric_key} after each epoch (dashed: stopped early)", x=0.01),
                      xaxis_title="epoch", yaxis_title=f"{r.info.metric_key} (validation, torch model)", height=400, **_LAYOUT)
    return fig


def _parallel_fig(go: Any, r: Report) -> tuple[Any, dict[str, Any]]:
    """The parallel coordinates, and where the page's limits brush its latency and metric axes."""
    dims, index = [], {}
    for i, d in enumerate(r.parallel):
        label = "lr (log10)" if d.log else _PARAM_LABELS.get(d.name, metric_label(r.info, d.name))
        spec: dict[str, Any] = {"label": label, "values": list(d.values)}
        if d.categories is not None:
            n = len(d.categories)
            spec.update(tickvals=list(range(n)), ticktext=list(d.categories), range=[-0.25, n - 0.75])
        if d.name in r.info.objectives:
            index[d.name] = i
        dims.append(spec)
    front = {e.row.trial for e in r.front}
    color = [1 if t in front else 0 for t in r.parallel_trials]
    fig = go.Figure(go.Parcoords(line=dict(color=color, colorscale=[[0, "#c4c4c4"], [1, _FRONT]], cmin=0, cmax=1), dimensions=dims))
    fig.update_layout(title=dict(text="Searched dimensions against the objectives (blue: Pareto front)", x=0.01),
                      height=460, margin=dict(l=70, r=70, t=90, b=40))
    values = {d.name: d.values for d in r.parallel}
    lat, m = values.get(LATENCY.key, (0.0,)), values.get(r.info.metric_key, (0.0,))
    span = (max(m) - min(m)) or 1.0
    brush = {"div": "parallel", "latency": index.get(LATENCY.key), "lat_lo": min(lat) * 0.999,
             "metric": index.get(r.info.metric_key), "m_lo": min(m) - 0.01 * span, "m_hi": max(m) + 0.01 * span}
    return fig, brush


def _importance_fig(go: Any, r: Report) -> Any | None:
    have = [i for i in r.importances if i.importances]
    if not have:
        return None
    params = sorted({p for i in have for p in i.importances})
    labels = [_PARAM_LABELS.get(p, p) for p in params]
    fig = go.Figure([go.Bar(name=i.objective, x=labels, y=[i.importances.get(p, 0.0) for p in params]) for i in have])
    fig.update_layout(title=dict(text="Parameter importance per objective (fANOVA, normalised to sum 1)", x=0.01),
                      barmode="group", yaxis_title="importance", height=380, **_LAYOUT)
    return fig


def _figures(go: Any, r: Report) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every figure by the id of its div, and the data the page's script needs to apply the limits."""
    figs: dict[str, Any] = {}
    state: dict[str, Any] = {"scatters": [], "parcoords": None}
    for i, (x, y) in enumerate(r.pairs):
        figs[f"scatter-{i}"], front = _scatter(go, r, x, y)
        state["scatters"].append({"div": f"scatter-{i}", "front": front, "front_trace": _TRACES.index("front")})
    if not r.pairs and r.complete:
        figs["scatter-0"] = _trial_plot(go, r)
    if len(r.hypervolume.trials) >= 2:
        figs["hypervolume"] = _hv_fig(go, r)
    if r.curves:
        figs["curves"] = _curves_fig(go, r)
    if r.parallel:
        figs["parallel"], state["parcoords"] = _parallel_fig(go, r)
    if (imp := _importance_fig(go, r)) is not None:
        figs["importance"] = imp
    base = r.baseline.metrics.get(r.info.metric_key) if r.baseline else None
    state.update(
        front={str(e.row.trial): {"latency": page.clean(e.row.metrics.get(LATENCY.key)), "drop": page.clean(e.drop)}
               for e in r.front},
        maximize=r.info.metric_direction == "maximize", baseline_metric=None if base is None else page.clean(float(base)),
    )
    return figs, state


def _facts(r: Report) -> list[tuple[str, str]]:
    info, env = r.info, r.info.meta.environment
    n_failed = sum(p.state == "failed" for p in r.points)
    return [
        ("storage", r.storage),
        ("objectives", ", ".join(f"{o} ({'max' if d == 'maximize' else 'min'})" for o, d in zip(info.objectives, info.directions))),
        ("trials", f"{r.complete} completed, {n_failed} failed, {len(r.front)} on the front"),
        ("energy", "estimate (no meter measured it)" if info.energy_source == "estimate" else f"measured ({info.energy_source})"),
        ("user file", info.meta.user_file or "-"), ("created", info.meta.created or "-"),
        ("host", f"{env.host or '-'}, {env.cpu or '-'}, {env.cores_usable or '-'} usable cores"),
        ("latency", f"onnxruntime p50 at batch {info.meta.latency.batch}, {info.meta.latency.threads} thread(s)"),
    ]


def render_html(report: Report) -> str:
    """The whole report as one HTML page with plotly.js inline, so it opens with no server and no network."""
    go, pio, get_plotlyjs = _plotly()
    r, info = report, report.info
    figs, state = _figures(go, r)
    failed = [(n, run, p.get("precision", "-"), page.num(p.get("prune_ratio"), 3), page.num(p.get("world_size")), reason)
              for n, run, p, reason in r.failed]
    figures = "{" + ",".join(f"{json.dumps(k)}:{pio.to_json(f, validate=False)}" for k, f in figs.items()) + "}"
    out = _env().get_template("report.html.j2").render(
        name=info.name, metric_key=info.metric_key, energy_source=info.energy_source, facts=_facts(r), notes=r.notes,
        **page.limits(r), front_head=page.front_head(info), front_rows=[page.front_row(r, e) for e in r.front],
        baseline=page.baseline(r), failed=failed, hypervolume=page.hypervolume(r), importance_notes=page.importance_notes(r),
        curves=page.curves(r),
        scatter_divs=[k for k in figs if k.startswith("scatter-")], figure_divs=list(figs),
        css=_asset("report.css"), js=_asset("report.js"), plotly_js=Markup(get_plotlyjs()),
        state=_script_json(json.dumps(state, allow_nan=False, default=str)), figures=_script_json(figures),
    )
    return out + "\n"
