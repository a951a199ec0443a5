"""The study report as one self-contained HTML page: plotly figures drawn from report.info, plus tables
and two limits (max metric drop from the baseline, max latency) that narrow the front in the page."""

from __future__ import annotations

import html
import json
import math
from typing import Any

from effsearch.errors import EffsearchError
from effsearch.report.front import FrontRow
from effsearch.report.info import Point, Report, metric_label

__all__ = ["render_html"]

_FRONT, _FRONT_OUT = "#1f6fb4", "#a9c8e6"
_COLORS = {"dominated": "#9a9a9a", "infeasible": "#c9a227", "failed": "#d62728"}
_PARAM_LABELS = {
    "batch_size": "batch", "lr": "lr", "lr_schedule": "schedule", "clip_norm": "clip", "prune_ratio": "prune",
    "precision": "precision", "world_size": "ranks",
}
# Trace order in every scatter; the page's script restyles the two front traces by these indices.
_TRACES = ("dominated", "infeasible", "failed", "front", "front_out", "baseline", "knee")


def _plotly() -> tuple[Any, Any, Any]:
    try:
        import plotly.graph_objects as go
        import plotly.io as pio
        from plotly.offline import get_plotlyjs
    except ImportError as exc:
        raise EffsearchError("the HTML report needs plotly: pip install 'effsearch[dashboard]'") from exc
    return go, pio, get_plotlyjs


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int) and abs(v) < 1e6:
        return f"{v:,}"
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    return f"{v:.{digits}g}"


def _json(obj: Any) -> str:
    # Safe inside a <script>: no "</script>" and no line separators that end a JS string.
    return json.dumps(obj, allow_nan=False, default=str).replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _better(direction: str) -> str:
    return "higher is better" if direction == "maximize" else "lower is better"


def _hover(p: Point, x: str, y: str) -> str:
    tag = " (baseline)" if p.baseline else (" (knee)" if p.knee else "")
    prm = p.params
    lines = [f"trial {p.trial}{tag}: {p.state}", f"{prm.get('precision', '?')}, prune {prm.get('prune_ratio', '-')}, {prm.get('world_size', '-')} rank(s)"]
    if p.values:
        lines.append(f"{x} {_num(p.values.get(x))}, {y} {_num(p.values.get(y))}")
    if p.reason:
        lines.append(f"failed: {p.reason[:120]}")
    return "<br>".join(html.escape(s) for s in lines)


def _scatter(go: Any, r: Report, x: str, y: str) -> tuple[Any, list[list[Any]]]:
    info = r.info
    fig = go.Figure()
    failed_total = sum(p.state == "failed" for p in r.points)

    def trace(name: str, pts: list[Point], marker: dict[str, Any], **kw: Any) -> None:
        fig.add_trace(go.Scatter(
            x=[p.values[x] for p in pts], y=[p.values[y] for p in pts], mode="markers", name=name, marker=marker,
            text=[_hover(p, x, y) for p in pts], hoverinfo="text", **kw,
        ))

    placed = [p for p in r.points if p.values and x in p.values and y in p.values]
    by = {s: [p for p in placed if p.state == s] for s in ("dominated", "infeasible", "failed", "front")}
    trace(f"dominated ({len(by['dominated'])})", by["dominated"], dict(color=_COLORS["dominated"], size=7, opacity=0.7))
    trace(f"outside the search constraints ({len(by['infeasible'])})", by["infeasible"],
          dict(color=_COLORS["infeasible"], size=7, symbol="triangle-up"), visible=True if by["infeasible"] else "legendonly")
    unplaced = failed_total - len(by["failed"])
    failed_name = f"failed ({failed_total}" + (f", {unplaced} unmeasured: see the table" if unplaced else "") + ")"
    trace(failed_name, by["failed"], dict(color=_COLORS["failed"], size=9, symbol="x"))
    trace(f"Pareto front ({len(by['front'])})", by["front"], dict(color=_FRONT, size=12, line=dict(width=1, color="#0b3c66")))
    trace("front, outside the page limits", [], dict(color=_FRONT_OUT, size=12, symbol="circle-open", line=dict(width=2)))
    trace("dense baseline", [p for p in placed if p.baseline], dict(color="#f2b705", size=18, symbol="star", line=dict(width=1, color="#5a4500")))
    trace("knee", [p for p in placed if p.knee], dict(color="#111", size=22, symbol="diamond-open", line=dict(width=2, color="#111")))
    fig.update_layout(
        title=dict(text=f"{_esc(x)} vs {_esc(y)}", x=0.01),
        xaxis_title=f"{metric_label(info, x)}, {_better(_dir(info, x))}",
        yaxis_title=f"{metric_label(info, y)}, {_better(_dir(info, y))}",
        template="plotly_white", height=440, margin=dict(l=70, r=20, t=50, b=60), legend=dict(font=dict(size=11)),
    )
    front_pts = [[p.trial, _clean(p.values[x]), _clean(p.values[y]), _hover(p, x, y)] for p in by["front"]]
    return fig, front_pts


def _dir(info: Any, key: str) -> str:
    return info.directions[info.objectives.index(key)]


def _trial_plot(go: Any, r: Report) -> tuple[Any, list[list[Any]]]:
    # One objective: plot it against the trial number.
    key = r.info.objectives[0]
    fig = go.Figure()
    for state, color in (("dominated", _COLORS["dominated"]), ("front", _FRONT)):
        pts = [p for p in r.points if p.state == state and p.values]
        fig.add_trace(go.Scatter(x=[p.trial for p in pts], y=[p.values[key] for p in pts], mode="markers", name=state,
                                 marker=dict(color=color, size=10), text=[_hover(p, "trial", key) for p in pts], hoverinfo="text"))
    fig.update_layout(title=f"{key} by trial", xaxis_title="trial", yaxis_title=metric_label(r.info, key), template="plotly_white", height=400)
    return fig, []


def _hv_fig(go: Any, r: Report) -> Any | None:
    h = r.hypervolume
    if len(h.trials) < 2:
        return None
    k = len(r.info.objectives)
    fig = go.Figure(go.Scatter(x=list(h.trials), y=list(h.values), mode="lines+markers", line=dict(shape="hv", color=_FRONT), name="hypervolume"))
    fig.update_layout(
        title=dict(text=f"Hypervolume after each completed trial (max {h.reference ** k:.3g})", x=0.01),
        xaxis_title="trial", yaxis_title="hypervolume (scaled objectives)", template="plotly_white", height=360,
        margin=dict(l=70, r=20, t=50, b=50),
    )
    return fig


def _parallel_fig(go: Any, r: Report) -> tuple[Any | None, dict[str, int]]:
    if not r.parallel:
        return None, {}
    front = {e.row.trial for e in r.front}
    color = [1 if t in front else 0 for t in r.parallel_trials]
    dims, index = [], {}
    for i, d in enumerate(r.parallel):
        spec: dict[str, Any] = {"label": _PARAM_LABELS.get(d.name, metric_label(r.info, d.name)), "values": list(d.values)}
        if d.categories is not None:
            spec.update(tickvals=list(range(len(d.categories))), ticktext=list(d.categories), range=[-0.25, len(d.categories) - 0.75])
        if d.log:
            spec["label"] = "lr (log10)"
        if d.name in r.info.objectives:
            index[d.name] = i
        dims.append(spec)
    fig = go.Figure(go.Parcoords(
        line=dict(color=color, colorscale=[[0, "#c4c4c4"], [1, _FRONT]], cmin=0, cmax=1),
        dimensions=dims,
    ))
    fig.update_layout(title=dict(text="Searched dimensions against the objectives (blue: Pareto front)", x=0.01),
                      height=460, margin=dict(l=70, r=70, t=90, b=40))
    return fig, index


def _importance_fig(go: Any, r: Report) -> Any | None:
    have = [i for i in r.importances if i.importances]
    if not have:
        return None
    params = sorted({p for i in have for p in i.importances})
    labels = [_PARAM_LABELS.get(p, p) for p in params]
    fig = go.Figure([go.Bar(name=imp.objective, x=labels, y=[imp.importances.get(p, 0.0) for p in params]) for imp in have])
    fig.update_layout(title=dict(text="Parameter importance per objective (fANOVA, normalised to sum 1)", x=0.01), barmode="group",
                      yaxis_title="importance", template="plotly_white", height=380, margin=dict(l=70, r=20, t=50, b=50))
    return fig


def _row_cells(r: Report, row: FrontRow) -> list[str]:
    """run, the searched dimensions, and the metric."""
    p, m = row.params, row.metrics
    return [
        _esc(row.run), _esc(row.precision), _num(p.get("prune_ratio"), 3), _num(p.get("batch_size")), _num(p.get("lr"), 3),
        _esc(p.get("lr_schedule", "-")), _num(p.get("clip_norm"), 3), _num(p.get("world_size")), _num(m.get(r.info.metric_key)),
    ]


_METRIC_COLS = ("latency_ms", "latency_p90_ms", "flops", "param_count", "size_bytes", "energy_j", "infer_energy_mj", "flops_per_j", "train_s")


def _front_table(r: Report) -> str:
    info = r.info
    head = ["trial", "run", "precision", "prune", "batch", "lr", "schedule", "clip", "ranks",
            _esc(metric_label(info, info.metric_key)), "drop from baseline"]
    head += [_esc(metric_label(info, k)) for k in _METRIC_COLS] + ["energy source", "export"]
    out = ['<table id="front-table" class="data"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for e in r.front:
        row = e.row
        tags = "".join(
            f' <span class="tag {c}">{c}</span>' for c, on in (("baseline", row.baseline), ("knee", e.knee)) if on
        )
        lat = _clean(row.metrics.get("latency_ms"))
        attrs = f'data-trial="{row.trial}" data-latency="{_esc(lat if lat is not None else "")}" data-drop="{_esc("" if e.drop is None else e.drop)}"'
        cells = [f"{row.trial}{tags}"] + _row_cells(r, row) + [_num(e.drop) if e.drop is not None else "-"]
        cells += [_num(row.metrics.get(k)) for k in _METRIC_COLS]
        cells += [_esc(row.metrics.get("energy_source", info.energy_source)), f"<code>{_esc(e.command)}</code>"]
        out.append(f'<tr class="front-row" {attrs}>' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    if not r.front:
        out.append('<p class="note">No completed trial yet, so there is no front.</p>')
    return "".join(out)


def _baseline_block(r: Report) -> str:
    b = r.baseline
    if b is None:
        return '<p class="note">The dense fp32 baseline (the first run) did not complete.</p>'
    where = "on the Pareto front (marked in the table)" if any(e.row.trial == b.trial for e in r.front) else "not on the Pareto front"
    m = b.metrics
    parts = [f"{_esc(metric_label(r.info, k))}: {_num(m.get(k))}" for k in (r.info.metric_key, *_METRIC_COLS) if k in m]
    return f"<p>Trial {b.trial} (run {b.run}, {_esc(b.precision)}, no pruning) is the dense baseline, {where}; drops are measured from it. " + "; ".join(parts) + ".</p>"


def _failed_table(r: Report) -> str:
    if not r.failed:
        return "<p>No trial failed.</p>"
    out = ['<table id="failed-table" class="data"><thead><tr><th>trial</th><th>run</th><th>precision</th><th>prune</th><th>ranks</th><th>reason</th></tr></thead><tbody>']
    for number, run, params, reason in r.failed:
        out.append(
            f"<tr><td>{number}</td><td>{run}</td><td>{_esc(params.get('precision', '-'))}</td><td>{_num(params.get('prune_ratio'), 3)}</td>"
            f"<td>{_num(params.get('world_size'))}</td><td class=\"reason\">{_esc(reason)}</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def _header(r: Report) -> str:
    info, meta = r.info, r.info.meta
    env = meta.get("environment", {})
    n_failed = sum(p.state == "failed" for p in r.points)
    objectives = ", ".join(f"{o} ({'max' if d == 'maximize' else 'min'})" for o, d in zip(info.objectives, info.directions))
    facts = [
        ("storage", r.storage), ("objectives", objectives),
        ("trials", f"{r.complete} completed, {n_failed} failed, {len(r.front)} on the front"),
        ("energy", "estimate (no meter measured it)" if info.energy_source == "estimate" else f"measured ({info.energy_source})"),
        ("user file", meta.get("user_file", "-")), ("created", meta.get("created", "-")),
        ("host", f"{env.get('host', '-')}, {env.get('cpu', '-')}, {env.get('cores_usable', '-')} usable cores"),
        ("latency", f"onnxruntime p50 at batch 1, {env.get('latency_threads', '-')} thread(s)"),
    ]
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in facts)
    return f'<h1>effsearch report: {_esc(info.name)}</h1><table class="facts">{rows}</table>'


def _controls(r: Report) -> str:
    """The two limits as range inputs spanning the front; each starts at its top, where nothing is hidden."""
    lats = [float(e.row.metrics["latency_ms"]) for e in r.front if _clean(e.row.metrics.get("latency_ms")) is not None]
    drops = [e.drop for e in r.front if e.drop is not None and math.isfinite(e.drop)]
    html_parts = ['<div id="controls">']
    if lats:
        hi = max(lats)
        html_parts.append(
            f'<label>max latency (ms) <input type="range" id="max-latency" min="0" max="{hi!r}" step="any" value="{hi!r}">'
            f' <output id="max-latency-value">{_num(hi)}</output></label>'
        )
    else:
        html_parts.append('<span class="note">no latency to limit</span>')
    if drops:
        lo, hi = min(drops), max(drops)
        base = float(r.baseline.metrics.get(r.info.metric_key, 1.0)) if r.baseline else 1.0
        lo -= max(0.05 * (hi - lo), 1e-3 * max(1.0, abs(base)))  # room to exclude every trial
        html_parts.append(
            f'<label>max {_esc(r.info.metric_key)} drop from the baseline <input type="range" id="max-drop" min="{lo!r}" max="{hi!r}" step="any" value="{hi!r}">'
            f' <output id="max-drop-value">{_num(hi)}</output></label>'
        )
    else:
        html_parts.append('<span class="note">metric-drop limit off: no completed baseline</span>')
    html_parts.append(f'<button id="reset-limits" type="button">reset</button> <span id="front-count">{len(r.front)} of {len(r.front)} front trials within the limits</span></div>')
    return "".join(html_parts)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d1d1f}
h1{font-size:22px;margin:0 0 12px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
table.facts th{text-align:left;padding-right:14px;color:#555;font-weight:600} table.facts td{padding:1px 0}
table.data{border-collapse:collapse;font-size:12.5px;margin:6px 0} table.data th,table.data td{border:1px solid #ddd;padding:3px 6px;text-align:right;white-space:nowrap}
table.data th{background:#f3f5f8} table.data td code{font-size:11.5px;white-space:nowrap} td.reason{text-align:left;white-space:normal;max-width:700px}
.tag{font-size:10.5px;padding:0 4px;border-radius:3px;color:#fff} .tag.baseline{background:#b08700} .tag.knee{background:#333}
#controls{position:sticky;top:0;background:#fff;padding:8px 0;border-bottom:1px solid #eee;z-index:5;display:flex;gap:22px;align-items:center;flex-wrap:wrap}
#controls input[type=range]{width:220px;vertical-align:middle} .note{color:#7a5b00;background:#fff7dc;padding:4px 8px;border-radius:4px}
ul.notes li{color:#7a5b00} .grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:12px} .scroll{overflow-x:auto}
"""

_JS = """
(function(){
const S = __STATE__;
const FIGS = __FIGS__;
const cfg = {displaylogo:false, responsive:true};
const plots = Object.keys(FIGS).map(id => Plotly.newPlot(id, FIGS[id].data, FIGS[id].layout, cfg));
const lat = document.getElementById('max-latency'), drop = document.getElementById('max-drop');
const rows = Array.from(document.querySelectorAll('#front-table tr.front-row'));
const fmt = v => (Math.abs(v) >= 1e-3 || v === 0) ? Number(v.toPrecision(4)).toString() : v.toExponential(3);
function limits(){
  return {lat: lat ? parseFloat(lat.value) : Infinity, drop: drop ? parseFloat(drop.value) : Infinity};
}
function inside(t, L){
  const r = S.front[t];
  if (!r) return true;
  const eps = 1e-12;
  if (r.latency !== null && r.latency > L.lat * (1 + eps) + eps) return false;
  if (r.drop !== null && r.drop > L.drop + Math.abs(L.drop) * eps + eps) return false;
  return true;
}
function apply(){
  const L = limits();
  if (lat) document.getElementById('max-latency-value').textContent = fmt(L.lat);
  if (drop) document.getElementById('max-drop-value').textContent = fmt(L.drop);
  let shown = 0;
  rows.forEach(tr => { const ok = inside(tr.dataset.trial, L); tr.style.display = ok ? '' : 'none'; if (ok) shown++; });
  document.getElementById('front-count').textContent = shown + ' of ' + rows.length + ' front trials within the limits';
  S.scatters.forEach(sc => {
    const a = {x:[], y:[], text:[]}, b = {x:[], y:[], text:[]};
    sc.front.forEach(p => { const t = inside(String(p[0]), L) ? a : b; t.x.push(p[1]); t.y.push(p[2]); t.text.push(p[3]); });
    Plotly.restyle(sc.div, {x:[a.x, b.x], y:[a.y, b.y], text:[a.text, b.text]}, [sc.front_trace, sc.front_trace + 1]);
  });
  if (S.parcoords) {
    const pc = S.parcoords, upd = {};
    // Brush the axes only while a limit is below its slider's top, so an untouched page shows every line.
    if (pc.latency !== null && lat) {
      upd['dimensions[' + pc.latency + '].constraintrange'] = L.lat < parseFloat(lat.max) ? [[pc.lat_lo, Math.max(L.lat, pc.lat_lo)]] : null;
    }
    if (pc.metric !== null && drop && S.baseline_metric !== null) {
      const edge = S.maximize ? S.baseline_metric - L.drop : S.baseline_metric + L.drop;
      upd['dimensions[' + pc.metric + '].constraintrange'] = L.drop >= parseFloat(drop.max) ? null
        : (S.maximize ? [[Math.min(edge, pc.m_hi), pc.m_hi]] : [[pc.m_lo, Math.max(edge, pc.m_lo)]]);
    }
    if (Object.keys(upd).length) Plotly.restyle(pc.div, upd, [0]);
  }
}
Promise.all(plots).then(() => {
  [lat, drop].forEach(el => { if (el) { el.addEventListener('input', apply); el.addEventListener('change', apply); } });
  document.getElementById('reset-limits').addEventListener('click', () => {
    if (lat) lat.value = lat.max; if (drop) drop.value = drop.max; apply();
  });
  apply();
  document.body.dataset.ready = 'true';
});
})();
"""


def render_html(r: Report) -> str:
    """The whole report as one HTML page with plotly.js inline, so it opens with no server and no network."""
    go, pio, get_plotlyjs = _plotly()
    info = r.info
    figs: dict[str, Any] = {}
    scatters = []
    if r.pairs:
        for i, (x, y) in enumerate(r.pairs):
            fig, front_pts = _scatter(go, r, x, y)
            div = f"scatter-{i}"
            figs[div] = fig
            scatters.append({"div": div, "front": front_pts, "front_trace": _TRACES.index("front")})
    elif r.complete:
        figs["scatter-0"], _ = _trial_plot(go, r)
    hv_fig = _hv_fig(go, r)
    if hv_fig is not None:
        figs["hypervolume"] = hv_fig
    par_fig, par_index = _parallel_fig(go, r)
    parcoords = None
    if par_fig is not None:
        figs["parallel"] = par_fig
        dims = {d.name: d for d in r.parallel}
        key = info.metric_key
        lat_vals = dims["latency_ms"].values if "latency_ms" in dims else (0.0,)
        m_vals = dims[key].values if key in dims else (0.0,)
        span = (max(m_vals) - min(m_vals)) or 1.0
        parcoords = {
            "div": "parallel",
            "latency": par_index.get("latency_ms"), "lat_lo": min(lat_vals) * 0.999,
            "metric": par_index.get(key), "m_lo": min(m_vals) - 0.01 * span, "m_hi": max(m_vals) + 0.01 * span,
        }
    imp_fig = _importance_fig(go, r)
    if imp_fig is not None:
        figs["importance"] = imp_fig
    controls = _controls(r)
    state = {
        "front": {str(e.row.trial): {"latency": _clean(e.row.metrics.get("latency_ms")), "drop": _clean(e.drop)} for e in r.front},
        "scatters": scatters,
        "parcoords": parcoords,
        "maximize": info.metric_direction == "maximize",
        "baseline_metric": _clean(float(r.baseline.metrics[info.metric_key])) if r.baseline and info.metric_key in r.baseline.metrics else None,
    }
    fig_json = "{" + ",".join(f"{json.dumps(k)}:{pio.to_json(f, validate=False)}" for k, f in figs.items()) + "}"
    fig_json = fig_json.replace("</", "<\\/")
    # Split, not replace: a study or trial name must never be read as a placeholder.
    head, rest = _JS.split("__STATE__")
    middle, tail = rest.split("__FIGS__")
    script = head + _json(state) + middle + fig_json + tail

    h = r.hypervolume
    if hv_fig is not None:
        lo_hi = ", ".join(
            f"{o}: {_num(-lo if d == 'maximize' else lo)} to {_num(-hi if d == 'maximize' else hi)}"
            for o, d, lo, hi in zip(info.objectives, info.directions, h.lo, h.hi)
        )
        hv_text = (
            f'<div id="hypervolume"></div><p>Each objective is scaled to [0, 1] between the best and the worst completed trial '
            f"({_esc(lo_hi)}); the reference point is {h.reference:g} in every scaled objective, 10% beyond the worst trial. "
            "Trials outside the search constraints are left out.</p>"
        )
    else:
        hv_text = f'<p class="note">{_esc(h.note or "no hypervolume")}</p>'
    imp_notes = "".join(f'<p class="note">{_esc(i.note)}</p>' for i in r.importances if i.note)
    # One note for all objectives when they share it.
    if len({i.note for i in r.importances}) == 1 and r.importances and r.importances[0].note:
        imp_notes = f'<p class="note">{_esc(r.importances[0].note)}</p>'
    scatter_divs = "".join(f'<div id="{k}"></div>' for k in figs if k.startswith("scatter-"))
    if not scatter_divs:
        scatter_divs = '<p class="note">No trial has been measured yet, so there is nothing to plot.</p>'
    notes = "".join(f"<li>{_esc(n)}</li>" for n in r.notes)
    energy_note = (
        "<p>Energy figures are <b>estimates</b> (no energy meter measured them on this machine).</p>"
        if info.energy_source == "estimate" else f"<p>Energy measured with {_esc(info.energy_source)}.</p>"
    )
    body = f"""
{_header(r)}
{f'<ul class="notes">{notes}</ul>' if notes else ''}
{controls}
<h2>Pareto front</h2>
<p>Front trials, best {_esc(info.metric_key)} first. Each row's command ships that trial (storage passwords redacted). Energy: {'estimate' if info.energy_source == 'estimate' else _esc(info.energy_source)}.</p>
<div class="scroll">{_front_table(r)}</div>
<h2>Dense baseline</h2>
{_baseline_block(r)}
<h2>Trade-offs</h2>
{energy_note}
<div class="grid">{scatter_divs}</div>
<h2>Hypervolume</h2>
{hv_text}
<h2>Searched dimensions</h2>
{'<div id="parallel"></div>' if par_fig is not None else '<p class="note">No completed trial to draw.</p>'}
<h2>Parameter importance</h2>
{imp_notes}
{'<div id="importance"></div>' if imp_fig is not None else ''}
<h2>Failed trials</h2>
<div class="scroll">{_failed_table(r)}</div>
"""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>effsearch report: {_esc(info.name)}</title>"
        '<link rel="icon" href="data:,">'
        f"<style>{_CSS}</style>"
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
        f"<script>{get_plotlyjs()}</script>"
        f"</head><body>{body}<script>{script}</script></body></html>\n"
    )
