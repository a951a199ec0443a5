"""What each epoch of a run measures: the window its seconds and energy cover, and the curve of its
metric, on which the early-stopping rule decides between epochs."""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from effsearch.figures import ENERGY, TRAIN_S
from effsearch.train.stopping import StopRule
from effsearch.train.validation import torch_metric, validation_part

__all__ = ["Curve", "Window"]


class Window:
    """The window train_s and energy_j cover: an epoch's training steps and its validation, entered per epoch.

    Every rank enters and leaves it together (a barrier at each end), so a machine-wide meter read by
    rank 0 alone spans every rank's steps and nothing after them; GPU work is synchronised at both ends.
    """

    def __init__(self, meter: Any, *, world_size: int, device: torch.device) -> None:
        self._meter = meter
        self._world_size = world_size
        self._device = device
        self._t0 = 0.0
        self.seconds = 0.0
        self.joules: float | None = None

    def _line_up(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.synchronize()
        if self._world_size > 1:
            dist.barrier(device_ids=[self._device.index] if self._device.type == "cuda" else None)

    def __enter__(self) -> Window:
        self._line_up()
        if self._meter is not None:
            self._meter.start()
        # Between two barriers (on every rank, meter or not): after every rank is ready, before any rank
        # steps, since rank 0 alone may read the machine's meter and the others would not wait for it.
        self._line_up()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is not None:
            return  # the run fails; what the window read no longer matters
        self._line_up()
        self.seconds += time.perf_counter() - self._t0
        if self._meter is not None:
            self.joules = (self.joules or 0.0) + float(self._meter.stop())


# How long the other ranks wait for rank 0's validation: as long as it takes. Not a collective, whose
# timeout (the process group's) stays on the training steps so that a dead rank is still caught; a rank
# that dies while rank 0 validates, or a run past its timeout, is caught by the driver (train/pool.py),
# which replaces every rank of the run.
_VALIDATION_WAIT = timedelta(days=7)


class Curve:
    """Each epoch's point: rank 0 validates inside the epoch's window; after it, the rule decides.

    One all-reduce carries every rank's joules so far and rank 0's metrics, so every rank applies the same
    rule to the same figures and all stop together. Where a rule may stop the run, rank 0 also validates
    the model before the phase's first epoch: the rule takes the run's own gain over each epoch.
    """

    def __init__(self, *, val_set: Any, metric: Any, rule: StopRule | None, window: Window, rank: int, world_size: int,
                 device: torch.device, store: dist.Store, output: Any = None) -> None:
        self._output = output  # register(output=...): the field of the forward's result the metric reads
        self._data = validation_part(val_set) if rank == 0 else None
        self._metric = metric
        self._rule = rule
        self.window = window
        self._rank = rank
        self._world_size = world_size
        self._device = device
        self._store = store
        self._previous = math.nan  # the metric one epoch before (rank 0's; 0 on the others until reduced)
        self.points: list[dict[str, Any]] = []
        self.stopped: str | None = None

    def _validate(self, model: torch.nn.Module, key: str) -> float:
        """The metric on rank 0 (0 on the others, which wait for it however long it takes)."""
        if self._rank == 0:
            metric = torch_metric(model, self._data, self._metric, self._device, output=self._output)
            if self._world_size > 1:
                self._store.set(f"effsearch-validated/{key}", "1")
            return metric
        self._store.wait([f"effsearch-validated/{key}"], _VALIDATION_WAIT)
        return 0.0

    def before(self, model: torch.nn.Module, epoch: int) -> None:
        """Validate the model about to train epoch `epoch` + 1, where the rule may stop the run after it."""
        if self._rule is not None and self._rule.first_epoch <= epoch + 1 < self._rule.epochs:
            # A validation's loader draws from the random state: fork it, so a run trains alike with a rule or without.
            with torch.random.fork_rng(devices=[]):
                self._previous = self._validate(model, f"before-{epoch + 1}")

    def validate(self, model: torch.nn.Module, epoch: int) -> float:
        """The metric after `epoch` (from 1)."""
        return self._validate(model, str(epoch))

    def after_epoch(self, epoch: int, metric: float, *, may_stop: bool) -> bool:
        """Take the point of `epoch` (from 1), once its window closed; True when the run stops here."""
        joules = self.window.joules
        previous = self._previous if self._rank == 0 else 0.0
        figures = torch.tensor([joules or 0.0, metric, float(joules is not None), previous], dtype=torch.float64, device=self._device)
        if self._world_size > 1:
            dist.all_reduce(figures)
        metric, energy, previous = float(figures[1]), (float(figures[0]) if float(figures[2]) > 0 else None), float(figures[3])
        self.points.append({"epoch": epoch, "metric": metric, ENERGY.key: energy, TRAIN_S.key: self.window.seconds})
        self._previous = metric
        if may_stop and self._rule is not None:
            self.stopped = self._rule.check(epoch, metric, energy, previous=previous)
        return self.stopped is not None
