"""The model card as Markdown a reader can skim."""

from __future__ import annotations

from typing import Any

from effsearch.figures import ENERGY, FIGURES, FLOPS
from effsearch.results.front import at_least

__all__ = ["card_markdown"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "-" if v is None else str(v)


def _pruning(card: dict[str, Any]) -> str:
    """The pruning built, then the share asked where it differs; the share asked where none was recorded built."""
    built, asked = card.get("prune_achieved"), card.get("prune_ratio")
    if built is None:
        return f"pruning asked {_fmt(asked)} (what was built is not recorded)"
    if asked is None or f"{float(asked):.3g}" == f"{float(built):.3g}":
        return f"pruned {float(built):.3g}"
    return f"pruned {float(built):.3g} (asked {float(asked):.3g})"


def card_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown a reader can skim: the model's inputs, what it scores, how that was measured."""
    m, meas, ver = card["metric"], card["measurement"], card["verification"]
    lat = meas["latency"]
    energy_note = " (estimate)" if meas["energy_source"] == "estimate" else f" ({meas['energy_source']})"
    given = card["inputs"] or [{"name": "input", "dtype": "float32", "shape": ["batch"]}]
    length = lat.get("sequence_length") or 1

    def zeros(t: dict[str, Any]) -> str:
        # One sample: the batch axis 1, a dynamic sequence axis at the length latency was timed at.
        dims = ["1" if d == "batch" or d is None else (str(length) if isinstance(d, str) else str(d)) for d in t["shape"]]
        dtype = "bool_" if t["dtype"] == "bool" else t["dtype"]  # np.bool_ on every numpy
        return f"np.zeros(({', '.join(dims)}{',' if len(dims) == 1 else ''}), dtype=np.{dtype})"

    if len(given) == 1:
        feed_lines = [f"x = {zeros(given[0])}  # one sample", f'(y,) = session.run(None, {{"{given[0]["name"]}": x}})']
    else:
        feed_lines = ["feed = {  # one sample: every input the model takes", *(f'    "{t["name"]}": {zeros(t)},' for t in given), "}",
                      "(y,) = session.run(None, feed)"]
    lines = [
        f"# {card['model']}: trial {card['trial']} of study {card['study']}",
        "",
        f"{card['precision']} ONNX model, {_pruning(card)}, "
        f"{m['key']} {_fmt(m['value'])} ({m['direction']}; baseline trial {_fmt(m['baseline_trial'])}: {_fmt(m['baseline_value'])}, "
        f"drop {_fmt(m['drop_from_baseline'])}).",
        "",
        f"Verified: {ver['metric']} on {ver['samples']} validation samples in a fresh onnxruntime session "
        f"(recorded {_fmt(ver['recorded'])}, difference {_fmt(ver['difference'])}, tolerance {_fmt(ver['tolerance'])}).",
        "",
        "## Inputs and outputs",
        "",
        "| | name | dtype | shape |",
        "| --- | --- | --- | --- |",
    ]
    for kind in ("inputs", "outputs"):
        for t in card[kind]:
            lines.append(f"| {kind[:-1]} | `{t['name']}` | {t['dtype']} | [{', '.join(str(d) for d in t['shape'])}] |")
    lines += [
        "",
        "The first axis (`batch`) is dynamic: any batch size runs"
        + ("; so is `sequence`, any length." if any("sequence" in t["shape"] for t in given) else "."),
        "",
        "```python",
        "import numpy as np",
        "import onnxruntime as ort",
        "",
        f'session = ort.InferenceSession("{card["model"]}", providers=["CPUExecutionProvider"])',
        *feed_lines,
        "```",
        "",
        "## Metrics",
        "",
        "| metric | value |",
        "| --- | --- |",
    ]
    for k, v in card["metrics"].items():
        unit = card["units"].get(k, "")
        label = f"{k} ({unit})" if unit else k
        if k == ENERGY.key:
            label += energy_note
        elif k in FIGURES and FIGURES[k].energy == "inference":
            source = card["metrics"].get("infer_energy_source", meas["energy_source"])
            label += " (estimate)" if source == "estimate" else f" ({source or 'not measured'})"
        lines.append(f"| {label} | {at_least(card['metrics'], k)}{_fmt(v)} |")
    host = meas["host"]
    lines += [
        "",
        "## How it was measured",
        "",
        f"- {m['key']}: {meas['metric']}.",
        f"- latency: {lat['runtime']} ({lat['target']}), batch {lat['batch']}, {lat['threads']} thread(s), "
        f"{lat['warmup']} warm-up calls, {lat['repeats']} timed calls; {lat['statistic']}"
        + ("" if lat["recorded_on_study"] else " (the study did not record these settings; effsearch's defaults shown)")
        + (f"; latency_ms {lat['figure']}" if lat.get("figure") else "") + ".",
        f"- FLOPs: {meas[FLOPS.key]}.",
        f"- energy: {meas['energy']}; source {meas['energy_source']}" + (" (an estimate, not a measurement)" if meas["energy_source"] == "estimate" else "") + ".",
        f"- host: {host.get('host')}, {host.get('cpu')}, {host.get('cores_usable')} usable cores, {host.get('platform')}.",
        "",
        "## Versions",
        "",
        "| library | measured with | exported with |",
        "| --- | --- | --- |",
    ]
    measured, exported = card["versions"]["measured_with"], card["versions"]["exported_with"]
    for name in sorted(set(measured) | set(exported)):
        lines.append(f"| {name} | {_fmt(measured.get(name))} | {_fmt(exported.get(name))} |")
    lines += ["", "## Parameters", "", "| parameter | value |", "| --- | --- |"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in card["params"].items()]
    lines += ["", f"Reproduce: `{card['export_command']}`", ""]
    return "\n".join(lines)


