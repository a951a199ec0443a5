"""Re-measure the front together: its artifacts, the points within noise of it, and the baseline.

Each trial's latency is first measured once, when its run ends, while the machine does whatever it does
then; a front drawn from figures taken at different moments can rank points by the moment. Here every
candidate is timed in the same interleaved blocks (measure/blocks.py), and the result is kept on the study
(finished Optuna trials cannot change) with the host that measured it.

The figures are taken as `tune` takes the first ones: on the study's latency target, with the first
validation samples at the study's latency batch and sequence length. These figures then replace the
first ones wherever effsearch shows a latency, so `effsearch remeasure` re-imports the study's user file
for those samples (tune passes its own) and refuses, in one line, where it cannot.
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
from effsearch.errors import PluginError, UserFileError
from effsearch.figures import FIGURES, LATENCY, SIZE
from effsearch.host import cpu_model
from effsearch.inputs import Feed, at_length
from effsearch.measure.blocks import ENERGY_PROTOCOL, PROTOCOL, measure_blocks, measure_energy

__all__ = ["NEAR", "candidates", "inference_meter_of", "remeasure", "remeasure_study", "study_providers", "study_sample"]

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
    key, direction = meta.metric.key, meta.metric.direction
    done = [t for t in record.read_all(study, states=(TrialState.COMPLETE,)) if t.onnx and Path(t.onnx).is_file()]
    base = next((t for t in done if t.baseline), None)
    base_metric = float(base.metrics[key]) if base is not None and key in base.metrics else None
    limits = Constraints.from_dict(record.read_limits(study))

    def meets(t: record.RecordedTrial, scale: float) -> bool:
        metrics = {**t.metrics, LATENCY.key: float(t.metrics.get(LATENCY.key, 0.0)) / scale}
        return all(c.met for c in limits.checks(metrics, key, base_metric, direction))

    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    # Figures taken from the timed calls: a latency NEAR times lower, a throughput NEAR times higher.
    timed = [(i, FIGURES[n].direction) for i, n in enumerate(names) if n in FIGURES and FIGURES[n].timed]
    lat = [i for i, d in timed if d == "minimize"]
    thr = [i for i, d in timed if d == "maximize"]
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
    if base is not None and base not in chosen and base.metrics.get(SIZE.key):
        chosen.append(base)
    if base is not None:  # each point's dense counterpart: the baseline run's trial at its precision
        wanted = {t.params.get("precision") for t in chosen}
        chosen += [t for t in done if t.run == base.run and t not in chosen and t.params.get("precision") in wanted]
    return chosen


def study_providers(study: optuna.Study) -> list[str]:
    """The onnxruntime providers of the latency target the study was tuned with (recorded by name)."""
    from effsearch.plugins import get_plugin

    name = record.read_meta(study).latency.target
    try:
        target = get_plugin("latency_target", name)
    except PluginError as exc:
        raise PluginError(
            f"study {study.study_name!r} times latency on the {name!r} target: {exc}; re-measure on a machine that has it"
        ) from exc
    return list(target().providers())


def study_sample(study: optuna.Study, user_file: str | Path | None = None) -> np.ndarray | Feed:
    """The batch `tune` timed: the first validation samples of the study's user file, at the study's latency
    batch and sequence length (measure/artifact.py: Measurer.sample).

    user_file: overrides the file the study recorded (one moved since, say).
    """
    from effsearch.measure.metric import Streamed
    from effsearch.userfile import load_data, load_user_file

    meta = record.read_meta(study)
    file = user_file or meta.user_file
    if not file:
        raise UserFileError(
            f"study {study.study_name!r} records no user file to take its validation samples from; pass --file my_model.py"
        )
    if not Path(file).expanduser().is_file():
        if user_file:
            raise UserFileError(f"--file {file}: no such file; pass the path of the study's model file")
        raise UserFileError(
            f"{file}: the study's user file is gone, and its validation samples are what latency is timed on; "
            "pass --file PATH to the model file"
        )
    uf = load_user_file(file)
    key = meta.metric.key
    if key is not None and uf.metric_key != key:
        raise UserFileError(
            f"{uf.path.name} registers the metric {uf.metric_key!r}, but study {study.study_name!r} measured {key!r}; "
            "pass the study's file with --file"
        )
    if meta.user_file_sha256 not in (None, uf.sha256):
        log.warning("%s changed since the study was created; its validation samples are timed all the same", uf.path.name)
    latency = meta.latency
    _, val = load_data(uf)
    sample = Streamed(val).head(latency.batch)
    length = latency.sequence_length
    return at_length(sample, int(length)) if length else sample


def inference_meter_of(study: optuna.Study) -> Any:
    """The study's inference-energy meter where it measures and is usable here; None for the estimate."""
    from effsearch.plugins import plugins_of_kind

    source = record.read_meta(study).energy.infer_source
    found = [p.obj for p in plugins_of_kind("energy_meter") if p.name == source and not p.unavailable]
    return found[0] if found and getattr(found[0], "measured", False) else None


def remeasure_study(study: optuna.Study, *, threads: int | None = None, user_file: str | Path | None = None) -> dict[str, Any] | None:
    """`remeasure` as `tune` runs it, from what the study recorded: its latency target, its validation samples
    (re-imported from its user file, or `user_file`), its threads (or `threads`) and inference-energy meter."""
    if not candidates(study):
        return None
    meta = record.read_meta(study)
    providers = study_providers(study)
    sample = study_sample(study, user_file)
    threads = threads or meta.latency.threads
    return remeasure(study, threads=threads, providers=providers, sample=sample, meter_cls=inference_meter_of(study))


def remeasure(
    study: optuna.Study,
    *,
    sample: np.ndarray | Feed,
    threads: int = 1,
    providers: list[str] | None = None,
    meter_cls: Any = None,
) -> dict[str, Any] | None:
    """Time the candidates together and keep the figures on the study; None when there is nothing to time.

    sample: the batch the study times (Measurer.sample, or study_sample); providers: its latency target's
    (study_providers; None: onnxruntime's CPU). meter_cls: the study's inference-energy meter; where it
    measures (not an estimate), the candidates' inference energy is read again too, in repeated windows.
    """
    chosen = candidates(study)
    baseline = next((t for t in chosen if t.baseline), None)
    if len(chosen) < 1:
        return None
    reference = baseline.number if baseline is not None else chosen[0].number
    t0 = time.perf_counter()
    paths = {t.number: Path(t.onnx) for t in chosen}
    timed = measure_blocks(paths, reference, sample, threads=threads, providers=providers)
    figures = {str(n): t.to_dict() for n, t in timed.items()}
    metered = getattr(meter_cls, "measured", False)
    if metered:
        for n, m in measure_energy(paths, sample, meter_cls, threads=threads, providers=providers).items():
            figures[str(n)].update(m.to_dict())
    entry = {
        "host": socket.gethostname(), "cpu": cpu_model(), "threads": threads, "protocol": PROTOCOL, "providers": providers,
        "when": time.time(), "seconds": time.perf_counter() - t0, "reference": reference, "trials": figures,
    }
    if metered:
        entry["energy"] = {"meter": str(meter_cls.name), "protocol": ENERGY_PROTOCOL}
    record.write_remeasured(study, entry)
    log.info("re-measured %d artifacts together in %.1f s", len(timed), entry["seconds"])
    return entry
