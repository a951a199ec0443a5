"""The model card: what a shipped model is, what it scores, and how that was measured (plain data)."""

from __future__ import annotations

import hashlib
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import optuna

from effsearch import record
from effsearch.constraints import metric_drop
from effsearch.figures import FLOPS, SIZE
from effsearch.results.front import UNITS, FrontRow, baseline, export_command, study_info
from effsearch.storage import display_url

__all__ = ["card_paths", "model_card", "model_io"]

_VERSIONS = ("effsearch", "onnxruntime", "onnx", "numpy", "torch", "optuna")


def card_paths(out: Path) -> tuple[Path, Path]:
    """model.card.json and model.card.md beside the model file `out` (model.onnx)."""
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.parent / f"{stem}.card.json", out.parent / f"{stem}.card.md"


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def model_io(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
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


def _remeasured(metrics: dict[str, Any]) -> dict[str, Any]:
    """Where latency_ms comes from: the front re-measured together (results/remeasured.py), or the run's end."""
    if metrics.get("remeasured_on") is None:
        return {"figure": "measured when the run ended"}
    return {"figure": f"re-measured together with the front on {metrics['remeasured_on']} (interleaved blocks); "
                      "latency_first_ms is the figure taken when the run ended"}


def _run_record(study: optuna.Study, row: FrontRow) -> record.TrialRecord:
    """The record of the run's lead trial, which holds what the run's precisions share (config, pruning)."""
    trials = {t.number: t for t in record.read_all(study)}
    own = trials.get(row.trial)
    lead = trials.get(own.run_trial) if own is not None else None
    return (lead or own).record if (lead or own) is not None else record.TrialRecord()


def model_card(
    study: optuna.Study,
    row: FrontRow,
    *,
    url: str,
    out: Path,
    model: Path,
    check: dict[str, Any],
    user_file: Path,
) -> dict[str, Any]:
    """The card of trial `row` shipped to `out`; model: the file as written (read for its hash and I/O)."""
    sha256 = hashlib.sha256(model.read_bytes()).hexdigest()
    inputs, outputs = model_io(model)
    info = study_info(study)
    meta = info.meta
    env = meta.environment
    base = baseline(study)
    run = _run_record(study, row)
    key = info.metric_key
    drop = None
    if base is not None and key in base.metrics and key in row.metrics:
        drop = metric_drop(float(row.metrics[key]), float(base.metrics[key]), info.metric_direction)
    return {
        "model": out.name,
        "sha256": sha256,
        SIZE.key: model.stat().st_size,
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
        "prune_ratio": row.params.get("prune_ratio"),  # asked for (the searched value)
        "prune_achieved": row.prune_achieved if row.prune_achieved is not None else run.prune_achieved,  # built
        "prune_kept": run.prune_kept or {},
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
                "target": meta.latency.target,
                "statistic": "p50 (latency_ms) and p90 (latency_p90_ms) of single calls at the batch below; "
                             "throughput_sps is that batch over latency_ms",
                **meta.latency.to_dict(),
                "recorded_on_study": meta.latency.recorded,
                **_remeasured(row.metrics),
            },
            FLOPS.key: "fvcore on the pruned torch module; one multiply-add counts as one",
            "energy_source": row.metrics.get("energy_source", info.energy_source),
            "energy_meter": meta.energy.meter,
            "energy": f"energy_j: the training run; infer_energy_mj: per sample, read over calls at batch {meta.latency.batch}",
            "host": {k: getattr(env, k) for k in ("host", "cpu", "platform", "python", "cores_usable", "torch_threads", "cuda_devices")},
        },
        "versions": {
            "measured_with": env.versions,
            "exported_with": {name: _version(name) for name in _VERSIONS},
        },
        "verification": check,
        "user_file": {"path": str(user_file), "sha256_recorded": meta.user_file_sha256},
        "export_command": export_command(info.name, url, row.trial, str(out)),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "exported_on": platform.node(),
    }


