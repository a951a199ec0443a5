"""The one call a user file makes: effsearch.register(...)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from effsearch.config import check_loader
from effsearch.errors import UserFileError
from effsearch.samples import SampleData

__all__ = ["Registration", "register"]

_pending: list[Registration] = []


@dataclass(frozen=True)
class Registration:
    """What a user file registered: factories and how to judge the model."""

    model: Callable[[], Any]
    data: Callable[[], tuple[Any, Any]]
    name: str | None = None
    loss: Callable[[Any, Any], Any] | None = None
    metric: Callable[[Any, Any], float] | None = None
    metric_direction: str = "maximize"
    epochs: int = 3
    trained: bool = False  # the model factory returns a trained model: run 1 measures it as given
    loader: dict[str, Any] | None = None  # training DataLoader options over the defaults (train/loaders.py)
    output: str | int | None = None  # the output's field the loss, metric and export read (outputs.py)
    target: str | None = None  # the target's field of dict samples (samples.py)
    collate: Callable[[list[Any]], Any] | None = None  # batches the samples in every loader (samples.py)

    def __post_init__(self) -> None:
        # Every process calls data() and gets its datasets read as samples.py says, target and collate included.
        inner = self.data.data if isinstance(self.data, SampleData) else self.data
        object.__setattr__(self, "data", SampleData(inner, self.target, self.collate))

    @property
    def metric_key(self) -> str:
        """The metric's name in trials and JSON: `accuracy` by default, else the callable's name."""
        if self.metric is None:
            return "accuracy"
        name = getattr(self.metric, "__name__", "metric")
        return "metric" if name == "<lambda>" else name


def register(
    model: Callable[[], Any],
    data: Callable[[], tuple[Any, Any]],
    name: str | None = None,
    loss: Callable[[Any, Any], Any] | None = None,
    metric: Callable[[Any, Any], float] | None = None,
    metric_direction: str = "maximize",
    epochs: int = 3,
    trained: bool = False,
    loader: dict[str, Any] | None = None,
    output: str | int | None = None,
    target: str | None = None,
    collate: Callable[[list[Any]], Any] | None = None,
) -> Registration:
    """Register a model factory and a data factory for `effsearch tune`.

    model: () -> torch.nn.Module. data: () -> (train_dataset, validation_dataset).
    trained: the model arrives trained (e.g. loads a checkpoint): the study's first run is the reference,
    that model exactly as given, and later runs prune it and fine-tune it with fine-tuning defaults.
    loader: options of the training DataLoader (num_workers, pin_memory, persistent_workers,
    prefetch_factor) over the device's defaults.
    output: where forward returns a ModelOutput, dict or tuple, the field (or index) that is the model's
    output; by default `logits`, else the first tensor.
    target: the target's field of dict samples; by default `labels`, else `label`.
    collate: batches a list of samples, as a DataLoader's collate_fn (e.g. DataCollatorWithPadding), in
    training, validation, calibration and latency alike.
    """
    if not callable(model):
        raise UserFileError(f"register(model=...) must be a callable returning a torch.nn.Module, got {type(model).__name__}")
    if not callable(data):
        raise UserFileError(f"register(data=...) must be a callable returning (train, validation) datasets, got {type(data).__name__}")
    if metric_direction not in ("maximize", "minimize"):
        raise UserFileError(f"register(metric_direction={metric_direction!r}) must be 'maximize' or 'minimize'")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise UserFileError(f"register(epochs={epochs!r}) must be a whole number of at least 1")
    if loss is not None and not callable(loss):
        raise UserFileError(f"register(loss=...) must be a callable (outputs, targets) -> scalar tensor, got {type(loss).__name__}")
    if metric is not None and not callable(metric):
        raise UserFileError(f"register(metric=...) must be a callable (outputs, targets) -> float, got {type(metric).__name__}")
    if not isinstance(trained, bool):
        raise UserFileError(f"register(trained={trained!r}) must be True or False")
    if loader is not None:
        loader = check_loader(loader)
    if output is not None and (not isinstance(output, (str, int)) or isinstance(output, bool)):
        raise UserFileError(f"register(output={output!r}) must be the name of an output field, e.g. 'logits', or a tuple index")
    if target is not None and not (isinstance(target, str) and target):
        raise UserFileError(f"register(target={target!r}) must be the name of a sample's field, e.g. 'labels'")
    if collate is not None and not callable(collate):
        raise UserFileError(f"register(collate=...) must be a callable (list of samples) -> batch, got {type(collate).__name__}")
    reg = Registration(model, data, name, loss, metric, metric_direction, epochs, trained, loader, output, target, collate)
    _pending.append(reg)
    return reg


def _take_pending() -> list[Registration]:
    """Registrations made since the last call (used by the user-file loader)."""
    out = list(_pending)
    _pending.clear()
    return out
