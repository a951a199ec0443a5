"""One rank's training run under DistributedDataParallel; rank 0 then exports the unwrapped module."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler

from effsearch.compress.prune import PruneReport, count_params, prune
from effsearch.errors import TrialError
from effsearch.measure.flops import FlopsReport, count_flops
from effsearch.onnx_export import ExportReport, export_onnx
from effsearch.space import TrainConfig
from effsearch.train.schedules import build_scheduler
from effsearch.userfile import UserFile, default_loss

__all__ = ["RunSpec", "RankResult", "train_rank", "per_rank_batch"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """One training run, as sent to every rank."""

    config: TrainConfig
    artifact_dir: str
    device: str = "cpu"  # "cpu" (gloo) or "cuda" (NCCL, one process per GPU)
    threads_per_rank: int = 1
    collective_timeout_s: float = 60.0
    meter: str | None = None  # a process-scope energy meter each rank runs


@dataclass(frozen=True)
class RankResult:
    rank: int
    train_s: float
    steps: int
    final_loss: float
    energy_j: float | None = None
    setup_s: float = 0.0
    # rank 0 only:
    export: ExportReport | None = None
    export_s: float = 0.0
    flops: FlopsReport | None = None
    prune: PruneReport | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """The global batch split across ranks, rounded to a multiple of the world size (at least 1 each)."""
    return max(1, round(batch_size / world_size))


def _first_batch(dataset: Any, n: int) -> torch.Tensor:
    return next(iter(DataLoader(dataset, batch_size=min(n, len(dataset)))))[0]


def _train_phase(
    model: torch.nn.Module,
    epochs: int,
    cfg: TrainConfig,
    train_set: Any,
    loss_fn: Any,
    rank: int,
    world_size: int,
    device: torch.device,
    epoch_offset: int,
) -> tuple[int, float]:
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    sampler = DistributedSampler(train_set, num_replicas=world_size, rank=rank, shuffle=True, seed=cfg.seed)
    loader = DataLoader(train_set, batch_size=per_rank_batch(cfg.batch_size, world_size), sampler=sampler)
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(ddp.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.AdamW(ddp.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = build_scheduler(opt, cfg.lr_schedule, epochs * len(loader), cfg.warmup_frac, cfg.lr)
    steps, last = 0, float("nan")
    ddp.train()
    for epoch in range(epochs):
        sampler.set_epoch(epoch_offset + epoch)
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(ddp(x), y)
            loss.backward()
            seen = loss.detach().clone()
            if world_size > 1:
                # Every rank sees the same mean loss, so all stop together on a non-finite one.
                dist.all_reduce(seen)
                seen /= world_size
            last = float(seen)
            if not math.isfinite(last):
                raise TrialError(f"non-finite loss ({last}) at epoch {epoch_offset + epoch + 1}, step {steps + 1}; lower lr or set clip_norm")
            if cfg.clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(ddp.parameters(), cfg.clip_norm)
            opt.step()
            sched.step()
            steps += 1
    return steps, last


def train_rank(
    spec: RunSpec,
    rank: int,
    world_size: int,
    store: dist.Store,
    uf: UserFile,
    datasets: tuple[Any, Any],
    meter: Any = None,
) -> RankResult:
    """Train one rank of a run; rank 0 exports the trained, unwrapped module to ONNX afterwards.

    store: the rendezvous store for this run (a prefix of the driver's TCPStore).
    meter: a started-per-call process-scope energy meter instance, or None.
    """
    t_setup = time.perf_counter()
    cfg = spec.config
    reg = uf.registration
    train_set, val_set = datasets
    torch.set_num_threads(spec.threads_per_rank)
    torch.manual_seed(cfg.seed)
    device = torch.device("cuda", rank) if spec.device == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    loss_fn = reg.loss or default_loss
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        store=store,
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=spec.collective_timeout_s),
    )
    try:
        if meter is not None:
            meter.start()
        t0 = time.perf_counter()
        model = reg.model()
        example = _first_batch(train_set, 2)
        # Fine-tuning needs at least one dense and one fine-tuning epoch; otherwise prune at the start.
        finetune = cfg.prune_when == "finetune" and cfg.prune_ratio > 0 and cfg.epochs >= 2
        ft_epochs = min(cfg.epochs - 1, max(1, round(cfg.epochs * cfg.finetune_frac))) if finetune else 0
        dense_epochs = cfg.epochs - ft_epochs if finetune else 0
        setup_s = t0 - t_setup
        phase = (cfg, train_set, loss_fn, rank, world_size, device)
        if dense_epochs == 0:
            pruned = prune(model, example, cfg.prune_ratio, cfg.prune_importance)
            model.to(device)
            steps, last = _train_phase(model, cfg.epochs, *phase, 0)
        else:
            # train -> prune -> fine-tune: every rank holds identical weights, so pruning agrees across ranks.
            model.to(device)
            steps, last = _train_phase(model, dense_epochs, *phase, 0)
            model.cpu()
            pruned = prune(model, example, cfg.prune_ratio, cfg.prune_importance)
            model.to(device)
            more, last = _train_phase(model, ft_epochs, *phase, dense_epochs)
            steps += more
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_s = time.perf_counter() - t0
        energy = meter.stop() if meter is not None else None
    finally:
        dist.destroy_process_group()
    if rank != 0:
        return RankResult(rank, train_s, steps, last, energy, setup_s)
    t1 = time.perf_counter()
    module = model.cpu().eval()
    batch = _first_batch(val_set, 64)
    exported = export_onnx(module, batch, Path(spec.artifact_dir) / "model.onnx")
    flops = count_flops(module, batch[:1])
    return RankResult(
        rank, train_s, steps, last, energy, setup_s, exported, time.perf_counter() - t1, flops, pruned,
        {"param_count_torch": count_params(module)},
    )
