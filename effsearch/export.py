"""Ship one trial: copy its ONNX file out, verify it on the validation set, and write its model card.

Reads storage; re-imports the user file only to verify (the model is never rebuilt or retrained).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import optuna

from effsearch import record
from effsearch.constraints import metric_drop
from effsearch.errors import ExportError, UserFileError
from effsearch.report.front import FrontRow, baseline, study_info
from effsearch.report.info import UNITS, display_url, export_command

__all__ = [
    "FP32_TOLERANCE",
    "TOLERANCE",
    "ExportResult",
    "tolerance",
    "card_paths",
    "source_artifact",
    "card_markdown",
    "export_trial",
]

log = logging.getLogger(__name__)

# fp32: the same file, the same onnxruntime kernels and thread count as when the study measured it, so
# the metric must come back exactly (1e-6 leaves room for float printing only).
FP32_TOLERANCE = 1e-6
# fp16 and int8: onnxruntime picks quantized and half-precision kernels by the CPU's instruction set
# (AVX2, AVX-512, VNNI), whose rounding and accumulation order differ, so a check on another machine than
# the one that measured can move a continuous metric in its last digits. 1e-4 allows that and is still
# smaller than one changed prediction in a validation set of up to 10,000 samples.
TOLERANCE = 1e-4
# What `effsearch tune` used when a study does not record its latency settings.
_LATENCY_DEFAULTS = {"threads": 1, "batch": 1, "warmup": 50, "repeats": 300}
_VERSIONS = ("effsearch", "onnxruntime", "onnx", "numpy", "torch", "optuna")


@dataclass(frozen=True)
class ExportResult:
    """What was written, and how the verification came out."""

    path: Path
    card_json: Path
    card_md: Path
    trial: int
    metric_key: str
    recorded: float
    verified: float
    tolerance: float
    card: dict[str, Any]


def tolerance(precision: str) -> float:
    """How far the re-measured metric may be from the recorded one (relative once the metric exceeds 1)."""
    return FP32_TOLERANCE if precision == "fp32" else TOLERANCE


def card_paths(out: Path) -> tuple[Path, Path]:
    """model.card.json and model.card.md beside the model file `out` (model.onnx)."""
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.parent / f"{stem}.card.json", out.parent / f"{stem}.card.md"


def source_artifact(study: optuna.Study, row: FrontRow) -> Path:
    """The trial's recorded ONNX file, refused unless it lies inside the study's artifact directory.

    The check keeps an edited (or shared, untrusted) storage from making export copy any file it names.
    """
    meta = record.read_meta(study)
    if not row.onnx:
        raise ExportError(f"trial {row.trial} recorded no ONNX file; choose another trial")
    if not meta.get("artifacts"):
        raise ExportError(f"study {study.study_name!r} records no artifact directory, so trial {row.trial}'s file cannot be trusted")
    root = Path(meta["artifacts"]).resolve()
    src = Path(row.onnx).resolve()
    if not src.is_relative_to(root):
        raise ExportError(
            f"trial {row.trial}'s recorded file {row.onnx} lies outside the study's artifact directory {root}; "
            "refusing to export it (was the storage edited?)"
        )
    if not src.is_file():
        raise ExportError(f"trial {row.trial}'s file {src} is missing; were the study's artifacts moved or deleted?")
    return src


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _io(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def describe(values: Any) -> list[dict[str, Any]]:
        out = []
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else None) for d in t.shape.dim]
            out.append({"name": v.name, "dtype": str(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)), "shape": shape})
        return out

    return describe(model.graph.input), describe(model.graph.output)


def _validation(uf: Any) -> Any:
    from effsearch.measure.metric import stack_dataset

    try:
        datasets = uf.registration.data()
        val = datasets[1]
    except Exception as exc:
        raise UserFileError(f"{uf.path.name}: the data factory raised {type(exc).__name__}: {exc}") from exc
    return stack_dataset(val)


def _run_record(study: optuna.Study, row: FrontRow) -> record.TrialRecord:
    """The record of the run's lead trial, which holds what the run's precisions share (config, pruning)."""
    trials = {t.number: t for t in record.read_all(study)}
    own = trials.get(row.trial)
    lead = trials.get(own.run_trial) if own is not None else None
    return (lead or own).record if (lead or own) is not None else record.TrialRecord()


def _card(study: optuna.Study, row: FrontRow, url: str, out: Path, sha256: str, inputs: list[dict[str, Any]],
          outputs: list[dict[str, Any]], check: dict[str, Any], user_file: Path) -> dict[str, Any]:
    info = study_info(study)
    meta = info.meta
    env = meta.get("environment", {})
    latency = {**_LATENCY_DEFAULTS, **{"threads": env.get("latency_threads", 1)}, **meta.get("latency", {})}
    recorded = "latency" in meta
    base = baseline(study)
    run = _run_record(study, row)
    key = info.metric_key
    drop = None
    if base is not None and key in base.metrics and key in row.metrics:
        drop = metric_drop(float(row.metrics[key]), float(base.metrics[key]), info.metric_direction)
    return {
        "model": out.name,
        "sha256": sha256,
        "size_bytes": out.stat().st_size,
        "study": info.name,
        "storage": display_url(url),
        "trial": row.trial,
        "run": row.run,
        "baseline": row.baseline,
        "source": row.onnx,
        "inputs": inputs,
        "outputs": outputs,
        "dynamic_batch": bool(inputs) and all(isinstance(i["shape"][0], str) for i in inputs if i["shape"]),
        "precision": row.precision,
        "prune_ratio": row.params.get("prune_ratio"),
        "prune_achieved": run.prune_achieved,
        "params": row.params,
        "training": run.config,
        "metric": {
            "key": key,
            "direction": info.metric_direction,
            "value": row.metrics.get(key),
            "baseline_trial": base.trial if base else None,
            "baseline_value": base.metrics.get(key) if base else None,
            "drop_from_baseline": drop,
        },
        "metrics": row.metrics,
        "units": {k: UNITS[k] for k in row.metrics if k in UNITS},
        "measurement": {
            "metric": "computed once over the whole validation set (all outputs and targets concatenated), from onnxruntime outputs of this file",
            "latency": {
                "runtime": "onnxruntime",
                "target": meta.get("latency_target", "cpu"),
                "statistic": "p50 (latency_ms) and p90 (latency_p90_ms) of single calls",
                **latency,
                "recorded_on_study": recorded,
            },
            "flops": "fvcore on the pruned torch module; one multiply-add counts as one",
            "energy_source": row.metrics.get("energy_source", info.energy_source),
            "energy_meter": meta.get("energy_meter"),
            "energy": "energy_j: the training run; infer_energy_mj: per inference at batch 1",
            "host": {k: env.get(k) for k in ("host", "cpu", "platform", "python", "cores_usable", "torch_threads", "cuda_devices")},
        },
        "versions": {
            "measured_with": env.get("versions", {}),
            "exported_with": {name: _version(name) for name in _VERSIONS},
        },
        "verification": check,
        "user_file": {"path": str(user_file), "sha256_recorded": meta.get("user_file_sha256")},
        "export_command": export_command(info.name, url, row.trial, str(out)),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "exported_on": platform.node(),
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "-" if v is None else str(v)


def card_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown a reader can skim: the model's inputs, what it scores, how that was measured."""
    m, meas, ver = card["metric"], card["measurement"], card["verification"]
    lat = meas["latency"]
    energy_note = " (estimate)" if meas["energy_source"] == "estimate" else f" ({meas['energy_source']})"
    inp = card["inputs"][0] if card["inputs"] else {"name": "input", "dtype": "float32", "shape": ["batch"]}
    sample_shape = ", ".join("1" if isinstance(d, str) or d is None else str(d) for d in inp["shape"])
    lines = [
        f"# {card['model']}: trial {card['trial']} of study {card['study']}",
        "",
        f"{card['precision']} ONNX model, pruning ratio {_fmt(card['prune_ratio'])} (achieved {_fmt(card['prune_achieved'])}), "
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
        "The first axis (`batch`) is dynamic: any batch size runs.",
        "",
        "```python",
        "import numpy as np",
        "import onnxruntime as ort",
        "",
        f'session = ort.InferenceSession("{card["model"]}", providers=["CPUExecutionProvider"])',
        f"x = np.zeros(({sample_shape}), dtype=np.{inp['dtype']})  # one sample",
        f'(y,) = session.run(None, {{"{inp["name"]}": x}})',
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
        if k in ("energy_j", "infer_energy_mj", "flops_per_j"):
            label += energy_note
        lines.append(f"| {label} | {_fmt(v)} |")
    host = meas["host"]
    lines += [
        "",
        "## How it was measured",
        "",
        f"- {m['key']}: {meas['metric']}.",
        f"- latency: {lat['runtime']} ({lat['target']}), batch {lat['batch']}, {lat['threads']} thread(s), "
        f"{lat['warmup']} warm-up calls, {lat['repeats']} timed calls; {lat['statistic']}"
        + ("" if lat["recorded_on_study"] else " (the study did not record these settings; effsearch's defaults shown)") + ".",
        f"- FLOPs: {meas['flops']}.",
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


def export_trial(
    study: optuna.Study,
    row: FrontRow,
    out: str | Path,
    url: str,
    force: bool = False,
    user_file: str | Path | None = None,
) -> ExportResult:
    """Copy trial `row`'s ONNX file to `out` (taken literally; parents made), verify it, and write its cards.

    The copy is verified before it takes `out`'s name: on a failed check nothing is left behind.
    user_file: overrides the user file recorded on the study.
    """
    from effsearch.measure.metric import ort_metric
    from effsearch.userfile import default_metric, load_user_file

    out = Path(out).expanduser().absolute()
    json_path, md_path = card_paths(out)
    if out.is_dir():
        raise ExportError(f"{out} is a directory; give the model file's path, e.g. -o {out / 'model.onnx'}")
    existing = [p for p in (out, json_path, md_path) if p.exists()]
    if existing and not force:
        listed = ", ".join(str(p) for p in existing)
        verb = "exists; pass --force to overwrite it" if len(existing) == 1 else "exist; pass --force to overwrite them"
        raise ExportError(f"{listed} {verb}")
    src = source_artifact(study, row)
    info = study_info(study)
    meta = info.meta
    key = info.metric_key
    if key not in row.metrics:
        raise ExportError(f"trial {row.trial} recorded no {key!r} to verify against")
    recorded = float(row.metrics[key])
    file = user_file or meta.get("user_file")
    if not file:
        raise ExportError(f"study {info.name!r} records no user file; pass --file my_model.py to verify with")
    if not Path(file).expanduser().is_file():
        raise ExportError(f"the study's user file {file} is gone; pass --file PATH to the model file to verify with")
    uf = load_user_file(file)
    if uf.metric_key != key:
        raise ExportError(f"{uf.path.name} registers the metric {uf.metric_key!r}, but the study measured {key!r}; pass the study's file with --file")
    sha_changed = bool(meta.get("user_file_sha256")) and uf.sha256 != meta.get("user_file_sha256")
    data = _validation(uf)
    threads = int(meta.get("latency", {}).get("threads") or meta.get("environment", {}).get("latency_threads") or 1)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{os.getpid()}.partial"
    try:
        shutil.copyfile(src, tmp)
        # A fresh onnxruntime session on the copy itself, over the whole validation set.
        try:
            verified = float(ort_metric(tmp, data, uf.registration.metric or default_metric, threads=threads))
        except Exception as exc:
            raise ExportError(f"trial {row.trial}'s model does not run on {uf.path.name}'s validation set: {type(exc).__name__}: {exc}") from exc
        tol = tolerance(row.precision)
        allowed = tol * max(1.0, abs(recorded))
        diff = abs(verified - recorded)
        if not diff <= allowed:
            why = f"{uf.path.name} changed since the study" if sha_changed else f"{uf.path.name}'s data differ from the study's"
            raise ExportError(
                f"trial {row.trial} scores {key} {verified:.6g} on the validation set, not the recorded {recorded:.6g} "
                f"(difference {diff:.3g} > {allowed:.3g}); {why}? Nothing was written"
            )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    if sha_changed:
        log.warning("%s changed since the study was created; the model verified with it all the same", uf.path.name)
    sha256 = hashlib.sha256(out.read_bytes()).hexdigest()
    inputs, outputs = _io(out)
    check = {
        "metric": key,
        "value": verified,
        "recorded": recorded,
        "difference": diff,
        "tolerance": tol,
        "tolerance_is": "absolute, or relative to the metric once its size exceeds 1",
        "samples": len(data),
        "threads": threads,
        "user_file_changed": sha_changed,
    }
    card = _card(study, row, url, out, sha256, inputs, outputs, check, uf.path)
    json_path.write_text(json.dumps(card, indent=2, default=str) + "\n")
    md_path.write_text(card_markdown(card))
    return ExportResult(out, json_path, md_path, row.trial, key, recorded, verified, tol, card)
