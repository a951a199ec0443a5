"""What a configuration costs before it trains: latency, size, FLOPs and parameters of its pruned graph.

They depend on the graph's shapes, not on its trained weights, so they are measured on the model as the
factory builds it, pruned by the same code path the ranks run (the shapes are exactly those training
will produce), exported and made into every precision. Latency is kept as a ratio to the untrained
dense fp32 model timed interleaved with it, since absolute figures drift over minutes on a shared machine,
next to that dense model's own figure from the same window. Configurations that build one graph (prune
ratios rounded to one channel count, importances that pick other channels) share one `graph_key`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effsearch.compress.prune import PruneReport, count_heads, prune
from effsearch.compress.quantize import make_precision
from effsearch.config import TrainConfig
from effsearch.errors import TrialError
from effsearch.inputs import head
from effsearch.measure.flops import count_flops
from effsearch.measure.blocks import PROTOCOL as BLOCKS, measure_blocks
from effsearch.onnx_export import export_onnx
from effsearch.train.loop import first_batch
from effsearch.userfile import UserFile

__all__ = ["PROTOCOL", "Untrained", "build_pruned", "graph_key", "measure_untrained"]

log = logging.getLogger(__name__)

# How untrained latency is timed: recorded with each figure and part of the cache's key. Interleaved with
# the dense model, as the re-measurement of the front is, with a tighter cap (every run pays it once).
PROTOCOL = {**BLOCKS, "max_blocks": 20, "max_s": 5.0, "reference": "untrained dense fp32"}


@dataclass(frozen=True)
class Untrained:
    """One precision of a configuration, measured untrained.

    latency_ratio (lo, hi): its p50 over the untrained dense fp32 model's, in the same window (the
    median, least and largest of the per-block ratios).
    dense_latency_ms: that dense model's p50 in that window, what the ratio is anchored on.
    """

    latency_ms: float
    latency_p90_ms: float
    latency_ratio: float
    latency_ratio_lo: float
    latency_ratio_hi: float
    size_bytes: int
    flops: int
    param_count: int
    dense_latency_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_pruned(
    uf: UserFile, train_set: Any, ratio: float, importance: str, seed: int, multiple: int | None = None
) -> tuple[torch.nn.Module, PruneReport]:
    """The model as a rank builds it, pruned as it prunes it (multiple: the study's channel multiple)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        model = uf.registration.model()
    report = prune(model, first_batch(train_set, 2), ratio, importance, multiple=multiple)
    return model.cpu().eval(), report


def graph_key(model: torch.nn.Module) -> str:
    """The built graph, hashed: every module's kind, every parameter's and buffer's name and shape, the
    attention heads. Untrained figures depend on nothing else of the model."""
    modules = [(name, type(m).__name__) for name, m in model.named_modules()]
    tensors = [(name, list(t.shape)) for name, t in (*model.named_parameters(), *model.named_buffers())]
    what = json.dumps([modules, tensors, count_heads(model)])
    return hashlib.sha256(what.encode()).hexdigest()[:24]


def _export(
    uf: UserFile, datasets: tuple[Any, Any], ratio: float, importance: str, seed: int, out: Path, multiple: int | None = None
) -> tuple[Path, int, int]:
    """Build, prune and export one model: (fp32 file, FLOPs, parameters)."""
    train_set, val_set = datasets
    module, _ = build_pruned(uf, train_set, ratio, importance, seed, multiple)
    batch = first_batch(val_set, 64)
    exported = export_onnx(module, batch, out / "model.onnx", output=uf.registration.output)
    flops = count_flops(module, head(batch, 1))
    return exported.path, flops.flops, flops.param_count


def measure_untrained(
    uf: UserFile,
    datasets: tuple[Any, Any],
    config: TrainConfig,
    precisions: tuple[str, ...],
    *,
    calibration: list[np.ndarray],
    sample: np.ndarray,
    threads: int = 1,
    providers: list[str] | None = None,
    multiple: int | None = None,
) -> dict[str, Untrained]:
    """Every precision of `config` that can be made, measured untrained (a precision that fails is left out).

    multiple: the channel multiple the study prunes with (None: this host's channel_multiple()).
    Raises TrialError where the configuration cannot be built, pruned or exported: training would fail too.
    """
    with tempfile.TemporaryDirectory(prefix="effsearch-untrained-") as tmp:
        dense_dir, config_dir = Path(tmp) / "dense", Path(tmp) / "config"
        dense, _, _ = _export(uf, datasets, 0.0, config.prune_importance, config.seed, dense_dir)
        fp32, flops, params = _export(uf, datasets, config.prune_ratio, config.prune_importance, config.seed, config_dir, multiple)
        paths = {"dense": dense}
        for precision in precisions:
            try:
                paths[precision] = make_precision(fp32, precision, calibration)
            except TrialError as exc:
                log.debug("untrained %s of prune %g failed: %s", precision, config.prune_ratio, exc)
        timed = measure_blocks(paths, "dense", sample, threads=threads, providers=providers, protocol=PROTOCOL)
        return {
            p: Untrained(
                latency_ms=timed[p].p50_ms, latency_p90_ms=timed[p].p90_ms, latency_ratio=timed[p].ratio,
                latency_ratio_lo=timed[p].ratio_lo, latency_ratio_hi=timed[p].ratio_hi,
                size_bytes=paths[p].stat().st_size, flops=flops, param_count=params, dense_latency_ms=timed["dense"].p50_ms,
            )
            for p in precisions
            if p in paths
        }
