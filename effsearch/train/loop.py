"""One rank's training run under DistributedDataParallel; rank 0 then hands the unwrapped module on."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DistributedSampler

from effsearch.compress.prune import PruneReport, prune
from effsearch.config import TrainConfig
from effsearch.errors import TrialError
from effsearch.fingerprint import DataFingerprint
from effsearch.inputs import call, to_device
from effsearch.outputs import Picked, pick, picked
from effsearch.samples import loader as batches_of
from effsearch.train.curve import Curve, Window
from effsearch.train.levers import Mixed, Teacher
from effsearch.train.schedules import build_scheduler
from effsearch.train.stopping import StopRule
from effsearch.userfile import UserFile, default_loss, default_metric

__all__ = ["RunSpec", "RankResult", "train_rank", "per_rank_batch", "first_batch"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """One training run, as sent to every rank.

    meter: the energy meter's plugin name; a process-scope meter is read in every rank, a machine-scope
    one in rank 0 alone, both around the same window (train_rank).
    finish: what rank 0 does with the trained, unwrapped module once the process group is gone
    (`finish(module, validation_set, artifact_dir) -> result`, a function of an importable module so it
    pickles; not of __main__, which ranks do not run); its result comes back as RankResult.artifact.
    data: the fingerprint of the driver's datasets; the pool refuses ranks whose datasets differ.
    stop: the early-stopping rule applied after each epoch (train/stopping.py), or None: never stopped.
    """

    config: TrainConfig
    artifact_dir: str
    _: KW_ONLY
    device: str = "cpu"  # "cpu" (gloo) or "cuda" (NCCL, one process per GPU)
    threads_per_rank: int = 1
    collective_timeout_s: float = 60.0
    meter: str | None = None
    finish: Callable[[torch.nn.Module, Any, Path], Any] | None = None
    data: DataFingerprint | None = None
    stop: StopRule | None = None
    channel_multiple: int | None = None  # the study's; None: this host's (compress/prune: channel_multiple)


@dataclass(frozen=True, kw_only=True)
class RankResult:
    """What one rank reports after its run; prune and artifact are rank 0's (every rank prunes alike).

    train_s and energy_j cover the training steps and each epoch's validation (see train_rank); energy_j
    is None where this rank read no meter. setup_s: joining the process group; build_s: the model factory
    and pruning.
    curve: after each epoch, the torch model's metric on the validation set (or a fixed part of it), and
    the run's energy (every rank's, summed) and this rank's training seconds so far, validation included.
    stopped: why the run was stopped early (then nothing was exported), or None.
    """

    rank: int
    train_s: float
    steps: int
    final_loss: float
    skipped_steps: int = 0  # optimizer steps fp16's gradient scaler skipped (train/levers.Mixed)
    energy_j: float | None = None
    setup_s: float = 0.0
    build_s: float = 0.0
    prune: PruneReport | None = None
    artifact: Any = None
    curve: tuple[dict[str, Any], ...] = ()
    stopped: str | None = None


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """The global batch split across ranks, rounded to a multiple of the world size (at least 1 each)."""
    return max(1, round(batch_size / world_size))


def first_batch(dataset: Any, n: int) -> Any:
    """The inputs of the dataset's first n samples, as one batch (a tensor, tuple or dict: inputs.py)."""
    return next(iter(batches_of(dataset, batch_size=min(n, len(dataset)))))[0]


@dataclass(frozen=True, kw_only=True)
class _Rank:
    """What every phase of one rank's run shares."""

    cfg: TrainConfig
    train_set: Any
    loss_fn: Any
    output: Any  # register(output=...): the field of the forward's result the loss reads (outputs.py)
    rank: int
    world_size: int
    device: torch.device
    mixed: Mixed
    curve: Curve
    teacher: Teacher | None = None


def _train_phase(model: torch.nn.Module, *, epochs: int, first_epoch: int, ctx: _Rank, may_stop: bool) -> tuple[int, float]:
    """Train `model` under DDP for `epochs` epochs, numbered from `first_epoch`; returns (steps, last loss).

    After each epoch the curve takes its point; the run ends early where may_stop and the rule says so.
    """
    cfg, device, world_size = ctx.cfg, ctx.device, ctx.world_size
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    sampler = DistributedSampler(ctx.train_set, num_replicas=world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed)
    loader = batches_of(ctx.train_set, batch_size=per_rank_batch(cfg.batch_size, world_size), sampler=sampler, **cfg.loader.kwargs())
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(ddp.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.AdamW(ddp.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = build_scheduler(opt, cfg.lr_schedule, epochs * len(loader), cfg.warmup_frac, cfg.lr)
    steps, last = 0, float("nan")
    ddp.train()
    mixed, teacher = ctx.mixed, ctx.teacher
    for epoch in range(epochs):
        # The window: this epoch's steps and its validation; the rule is applied between windows.
        with ctx.curve.window:
            if epoch == 0 and may_stop:
                ctx.curve.before(model, first_epoch)
            sampler.set_epoch(first_epoch + epoch)
            for x, y in loader:
                x, y = to_device(x, device, non_blocking=True), y.to(device, non_blocking=True)
                opt.zero_grad(set_to_none=True)
                with mixed.autocast():
                    out = pick(call(ddp, x), ctx.output)
                    loss = ctx.loss_fn(out, y)
                if teacher is not None:
                    loss = teacher.loss(loss, out, x, y, mixed)
                seen = loss.detach().float().clone()
                if world_size > 1:
                    # Every rank sees the same mean loss, so all stop together on a non-finite one.
                    dist.all_reduce(seen)
                    seen /= world_size
                last = float(seen)
                if not math.isfinite(last):
                    where = "" if mixed.precision == "fp32" else f" (training in {mixed.precision})"
                    raise TrialError(
                        f"non-finite loss ({last}) at epoch {first_epoch + epoch + 1}, step {steps + 1}{where}; lower lr or set clip_norm"
                    )
                mixed.backward(loss)
                mixed.step(opt, ddp.parameters(), cfg.clip_norm)
                sched.step()
                steps += 1
            metric = ctx.curve.validate(model, first_epoch + epoch + 1)
        if ctx.curve.after_epoch(first_epoch + epoch + 1, metric, may_stop=may_stop):
            break
    return steps, last


def _epochs_around_pruning(cfg: TrainConfig) -> tuple[int, int]:
    """(dense epochs before pruning, epochs after it); pruning at the start has no dense epochs."""
    # Fine-tuning needs at least one dense and one fine-tuning epoch; otherwise prune at the start.
    if cfg.prune_when != "finetune" or cfg.prune_ratio <= 0 or cfg.epochs < 2:
        return 0, cfg.epochs
    after = min(cfg.epochs - 1, max(1, round(cfg.epochs * cfg.finetune_frac)))
    return cfg.epochs - after, after


def train_rank(
    spec: RunSpec,
    *,
    rank: int,
    world_size: int,
    store: dist.Store,
    uf: UserFile,
    datasets: tuple[Any, Any],
    meter: Any = None,
) -> RankResult:
    """One rank of a run: build -> (train dense) -> prune -> train; then rank 0 runs spec.finish.

    Every epoch ends with a validation on rank 0 (the curve), within the window, which the other ranks wait
    for however long it takes; a run that may be stopped early (spec.stop) also validates the model before
    its first epoch that may stop, within that epoch's window; a stopped run ends there on every rank, and
    rank 0 exports nothing.

    train_s and the meter's reading cover the training steps and each epoch's validation, for every
    meter and placement, one window per epoch, summed: not joining the group, building the model,
    pruning (at the start, or between the dense and the fine-tuning epochs of prune_when="finetune"),
    the rule between epochs, nor rank 0's export afterwards.
    store: the rendezvous store for this run (a prefix of the driver's TCPStore).
    meter: an energy meter instance this rank reads over that window, or None.
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
    mixed = Mixed.for_run(cfg.train_precision, device)
    if cfg.distill > 0 and not reg.trained:
        raise TrialError(f"distill = {cfg.distill} needs a model that arrives trained (register(trained=True)) to teach; set distill = 0")
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        store=store,
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=spec.collective_timeout_s),
    )
    window = Window(meter, world_size=world_size, device=device)
    curve = Curve(val_set=val_set, metric=reg.metric or default_metric, rule=spec.stop, window=window, rank=rank,
                   world_size=world_size, device=device, store=store, output=reg.output)
    try:
        t0 = time.perf_counter()
        setup_s = t0 - t_setup
        model = reg.model()
        # The teacher: the model as given, before any pruning or training here, answering with the one tensor
        # the loss reads (outputs.pick) where its forward returns a ModelOutput, dict or tuple.
        teacher = Teacher.of(Picked(model, reg.output), cfg.distill, cfg.distill_temperature, device) if cfg.distill > 0 else None
        ctx = _Rank(cfg=cfg, train_set=train_set, loss_fn=reg.loss or default_loss, output=reg.output, rank=rank,
                    world_size=world_size, device=device, mixed=mixed, curve=curve, teacher=teacher)
        example = first_batch(train_set, 2)
        dense, after = _epochs_around_pruning(cfg)
        steps = 0
        if dense:
            # train -> prune -> fine-tune: every rank holds identical weights, so pruning agrees across ranks.
            model.to(device)
            # No stopping before the pruning epoch: the dense model's curve says little of the pruned one's.
            steps, _ = _train_phase(model, epochs=dense, first_epoch=0, ctx=ctx, may_stop=False)
            model.cpu()
        pruned = prune(model, example, cfg.prune_ratio, cfg.prune_importance, multiple=spec.channel_multiple)
        model.to(device)
        build_s = time.perf_counter() - t0 - window.seconds
        more, last = _train_phase(model, epochs=after, first_epoch=dense, ctx=ctx, may_stop=True)
        steps += more
        mixed.check(steps)
    finally:
        dist.destroy_process_group()
    result = RankResult(
        rank=rank, train_s=window.seconds, steps=steps, final_loss=last, skipped_steps=mixed.skipped,
        energy_j=window.joules, setup_s=setup_s, build_s=build_s, prune=pruned,
        curve=tuple(curve.points), stopped=curve.stopped,
    )
    if rank != 0 or spec.finish is None or curve.stopped:
        return result
    # Picked where register(output=...) names a field, so that the export reads it too.
    artifact = spec.finish(picked(model.cpu().eval(), reg.output), val_set, Path(spec.artifact_dir))
    return dataclasses.replace(result, artifact=artifact)
