"""Re-measure the front together: its artifacts, the points within noise of it, and the baseline.

Each trial's latency is first measured once, when its run ends, while the machine does whatever it does
then; a front drawn from figures taken at different moments can rank points by the moment. Here every
candidate is timed in the same interleaved blocks (measure/blocks.py), and the result is kept on the study
(finished Optuna trials cannot change) with the host that measured it.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from effsearch import record
from effsearch.constraints import Constraints
from effsearch.host import cpu_model
from effsearch.measure.blocks import ENERGY_PROTOCOL, PROTOCOL, measure_blocks, measure_energy

__all__ = ["NEAR", "candidates", "remeasure"]

log = logging.getLogger(__name__)

# A completed point whose latency divided by this would put it on the front is within noise of it: a
# once-measured latency on a shared machine drifts by up to ~50 %.
NEAR = 1.5
_MAX_CANDIDATES = 40


def _dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a <= b) and np.any(a < b))


def candidates(study: optuna.Study) -> list[record.RecordedTrial]:
    """The front, the completed points that could be on it (or within a latency limit) but for latency noise,
    the baseline, and the baseline run's trials at the precisions of those (their dense counterparts)."""
    directions = [d.name.lower() for d in study.directions]
    names = list(study.metric_names or [])
    meta = record.read_meta(study)
    key, direction = meta.get("metric_key", names[0] if names else ""), meta.get("metric_direction", "maximize")
    done = [t for t in record.read_all(study, states=(TrialState.COMPLETE,)) if t.onnx and Path(t.onnx).is_file()]
    base = next((t for t in done if t.baseline), None)
    base_metric = float(base.metrics[key]) if base is not None and key in base.metrics else None
    limits = Constraints.from_dict(record.read_limits(study))

    def meets(t: record.RecordedTrial, scale: float) -> bool:
        metrics = {**t.metrics, "latency_ms": float(t.metrics.get("latency_ms", 0.0)) / scale}
        return all(c.met for c in limits.checks(metrics, key, base_metric, direction))

    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    lat = [i for i, n in enumerate(names) if n in ("latency_ms", "latency_p90_ms")]
    thr = [i for i, n in enumerate(names) if n == "throughput_sps"]
    values = {t.number: sign * np.array(t.values, dtype=float) for t in done}
    feasible = [t for t in done if meets(t, 1.0)]
    front = {t.number for t in feasible if not any(_dominates(values[o.number], values[t.number]) for o in feasible if o is not t)}
    near = []
    for t in done:
        if t.number in front or not meets(t, NEAR):
            continue
        hopeful = values[t.number].copy()
        hopeful[lat] /= NEAR
        hopeful[thr] *= NEAR  # negated: a throughput NEAR times higher
        if not any(_dominates(values[m], hopeful) for m in front):
            near.append(t)
    chosen = [t for t in done if t.number in front] + near[: max(0, _MAX_CANDIDATES - len(front))]
    if base is not None and base not in chosen and base.metrics.get("size_bytes"):
        chosen.append(base)
    if base is not None:  # each point's dense counterpart: the baseline run's trial at its precision
        wanted = {t.params.get("precision") for t in chosen}
        chosen += [t for t in done if t.run == base.run and t not in chosen and t.params.get("precision") in wanted]
    return chosen


def _sample(study: optuna.Study) -> np.ndarray | dict[str, np.ndarray]:
    """A batch of the study's input at its latency batch: zeros for features, ones for tokens and masks."""
    meta = record.read_meta(study)
    batch = int(meta.get("latency", {}).get("batch") or 1)
    parts = meta.get("inputs") or {"input": {"shape": meta.get("input_shape") or [], "dtype": meta.get("input_dtype") or "float32"}}

    length = meta.get("latency", {}).get("sequence_length")

    def of(part: dict) -> np.ndarray:
        dtype = np.dtype(part.get("dtype") or "float32")
        shape = [int(d) for d in part.get("shape") or []]
        if dtype.kind != "f" and shape and length:
            shape[0] = int(length)  # tokens and masks at the length the study times
        fill = np.zeros if dtype.kind == "f" else np.ones
        return fill([batch, *shape], dtype=dtype)

    if list(parts) == ["input"]:
        return of(parts["input"])
    return {name: of(part) for name, part in parts.items()}


def remeasure(
    study: optuna.Study,
    *,
    threads: int = 1,
    providers: list[str] | None = None,
    sample: np.ndarray | None = None,
    meter_cls: Any = None,
) -> dict[str, Any] | None:
    """Time the candidates together and keep the figures on the study; None when there is nothing to time.

    meter_cls: the study's inference-energy meter; where it measures (not an estimate), the candidates'
    inference energy is read again too, in repeated interleaved windows.
    """
    chosen = candidates(study)
    baseline = next((t for t in chosen if t.baseline), None)
    if len(chosen) < 1:
        return None
    reference = baseline.number if baseline is not None else chosen[0].number
    t0 = time.perf_counter()
    paths = {t.number: Path(t.onnx) for t in chosen}
    sample = _sample(study) if sample is None else sample
    timed = measure_blocks(paths, reference, sample, threads=threads, providers=providers)
    figures = {str(n): t.to_dict() for n, t in timed.items()}
    metered = getattr(meter_cls, "measured", False)
    if metered:
        for n, m in measure_energy(paths, sample, meter_cls, threads=threads, providers=providers).items():
            figures[str(n)].update(m.to_dict())
    entry = {
        "host": socket.gethostname(), "cpu": cpu_model(), "threads": threads, "protocol": PROTOCOL,
        "when": time.time(), "seconds": time.perf_counter() - t0, "reference": reference, "trials": figures,
    }
    if metered:
        entry["energy"] = {"meter": str(meter_cls.name), "protocol": ENERGY_PROTOCOL}
    record.write_remeasured(study, entry)
    log.info("re-measured %d artifacts together in %.1f s", len(timed), entry["seconds"])
    return entry
