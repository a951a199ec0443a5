"""Load a user's model file, check it against the register() contract, and say clearly what is wrong."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effsearch.errors import UserFileError
from effsearch.fingerprint import DataFingerprint, check_same_data, data_fingerprint
from effsearch.registration import Registration, _take_pending

__all__ = [
    "PYTHON",
    "UserFile",
    "Probe",
    "fingerprint_of",
    "load_data",
    "load_user_file",
    "probe",
    "default_loss",
    "default_metric",
    "user_line",
    "user_file_of",
]

# The path of a model and data registered from Python: there is no file to re-import, and messages name it so.
PYTHON = Path("<python>")


@dataclass(frozen=True)
class UserFile:
    """A loaded user file (or a registration made from Python): where it is, its hash, and what it registered."""

    path: Path
    sha256: str
    registration: Registration
    # The registration as cloudpickle bytes, which is how the rank processes receive it when there is no file.
    pickled: bytes | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_registration(cls, registration: Registration) -> UserFile:
        """A registration made from Python (no file): pickled now, so that one the ranks cannot receive is refused here."""
        from effsearch.pickled import dumps

        pickled = dumps(registration)
        return cls(PYTHON, hashlib.sha256(pickled).hexdigest(), registration, pickled)

    @classmethod
    def from_pickled(cls, pickled: bytes) -> UserFile:
        """A registration made from Python, rebuilt from its `pickled` bytes in a rank process."""
        from effsearch.pickled import loads

        return cls(PYTHON, hashlib.sha256(pickled).hexdigest(), loads(pickled), pickled)

    @property
    def from_python(self) -> bool:
        return self.pickled is not None

    @property
    def name(self) -> str:
        return self.registration.name or ("notebook" if self.from_python else self.path.stem)

    @property
    def metric_key(self) -> str:
        return self.registration.metric_key


@dataclass(frozen=True)
class Probe:
    """What one forward pass of the first training batch showed."""

    input_shape: tuple[int, ...]
    input_dtype: str
    output_shape: tuple[int, ...]
    n_train: int
    n_val: int
    # Every part of the input by its exported name: {"shape": per-sample shape, "dtype"} (inputs.py).
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)


def _module_name(path: Path) -> str:
    # Deterministic per path, so every process that loads the file gives it the same name.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    return f"effsearch_user_{digest}"


def user_line(path: Path, exc: BaseException) -> str:
    """' (line N)' for the deepest traceback frame inside the user's file, else ''."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == path]
    return f" (line {frames[-1].lineno})" if frames else ""


def load_user_file(path: str | Path) -> UserFile:
    """Import the file in a fresh module namespace and return what it registered."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise UserFileError(f"{path}: no such file; pass the path of your model file, e.g. effsearch tune my_model.py")
    source = path.read_bytes()
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserFileError(f"{path}: cannot be imported as Python; give it a .py name")
    module = importlib.util.module_from_spec(spec)
    _take_pending()
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise UserFileError(f"{path.name}: syntax error at line {exc.lineno}: {exc.msg}") from exc
    except UserFileError as exc:
        sys.modules.pop(name, None)
        raise UserFileError(f"{path.name}{user_line(path, exc)}: {exc}") from exc
    except Exception as exc:
        sys.modules.pop(name, None)
        raise UserFileError(
            f"{path.name}{user_line(path, exc)}: importing the file raised {type(exc).__name__}: {exc}"
        ) from exc
    registered = _take_pending()
    if not registered:
        raise UserFileError(f"{path.name}: effsearch.register() was never called; add it at the end of the file")
    if len(registered) > 1:
        raise UserFileError(
            f"{path.name}: effsearch.register() was called {len(registered)} times; register one model per file"
        )
    return UserFile(path=path, sha256=hashlib.sha256(source).hexdigest(), registration=registered[0])


def default_loss(outputs: Any, targets: Any) -> Any:
    """Cross-entropy over class logits."""
    import torch.nn.functional as F

    return F.cross_entropy(outputs, targets)


def default_metric(outputs: Any, targets: Any) -> float:
    """Top-1 accuracy in [0, 1]."""
    return float((outputs.argmax(dim=-1) == targets).float().mean())


def _call(uf: UserFile, what: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except UserFileError as exc:  # effsearch's own check of what the call returned (samples.py)
        raise UserFileError(f"{uf.path.name}: {exc}") from exc
    except Exception as exc:
        raise UserFileError(
            f"{uf.path.name}{user_line(uf.path, exc)}: {what} raised {type(exc).__name__}: {exc}"
        ) from exc


def _shape(x: Any) -> str:
    return "x".join(str(d) for d in getattr(x, "shape", ())) or "scalar"


def _datasets(uf: UserFile) -> tuple[Any, Any]:
    """One call of the data factory, checked: two map-style, non-empty datasets."""
    f = uf.path.name
    datasets = _call(uf, "the data factory", uf.registration.data)
    if not (isinstance(datasets, (tuple, list)) and len(datasets) == 2):
        raise UserFileError(f"{f}: the data factory must return (train_dataset, validation_dataset), got {type(datasets).__name__}")
    for label, ds in zip(("training", "validation"), datasets):
        try:
            n = len(ds)
        except TypeError as exc:
            raise UserFileError(f"{f}: the {label} dataset has no len(); return map-style Datasets") from exc
        if n == 0:
            raise UserFileError(f"{f}: the {label} dataset is empty")
    return datasets[0], datasets[1]


def load_data(uf: UserFile) -> tuple[Any, Any]:
    """(train, validation) from the data factory, called twice to refuse a split that changes from call to call.

    data() is called in several processes (the driver, the fork server, `export`); an unseeded random
    split would give each its own split, and the ranks would train on samples the driver measures on.
    Two calls in one process catch that (the global generators moved on); the ranks compare theirs too.
    """
    first = _datasets(uf)
    check_same_data(uf.path, fingerprint_of(uf, first), fingerprint_of(uf, _datasets(uf)), where="two calls")
    return first


def fingerprint_of(uf: UserFile, datasets: tuple[Any, Any]) -> DataFingerprint:
    """data_fingerprint, with a dataset that cannot be indexed reported as the user file's error."""
    try:
        return data_fingerprint(datasets)
    except Exception as exc:
        raise UserFileError(
            f"{uf.path.name}{user_line(uf.path, exc)}: reading validation items by index raised {type(exc).__name__}: {exc}"
        ) from exc


def probe(uf: UserFile) -> tuple[Probe, tuple[Any, Any]]:
    """Build the model and the data, push the first batch through model and loss, then call data() once more
    to refuse a split that changes from call to call (see load_data); return the datasets too.

    Turns every way the contract can break into one line naming the file.
    """
    import torch

    from effsearch.errors import TrialError
    from effsearch.outputs import pick
    from effsearch.samples import loader

    reg = uf.registration
    f = uf.path.name
    model = _call(uf, "the model factory", reg.model)
    if not isinstance(model, torch.nn.Module):
        raise UserFileError(f"{f}: the model factory returned {type(model).__name__}, not a torch.nn.Module")
    train, val = _datasets(uf)
    try:
        x, y = next(iter(loader(train, batch_size=min(4, len(train)))))
    except UserFileError as exc:
        raise UserFileError(f"{f}: {exc}") from exc
    except Exception as exc:
        raise UserFileError(
            f"{f}: the training dataset's items must be (input, target) pairs of tensors: {type(exc).__name__}: {exc}"
        ) from exc
    from effsearch import inputs

    bad = inputs.check_input(x)
    if bad is not None:
        raise UserFileError(
            f"{f}: a sample's input must be a tensor, a tuple of tensors or a dict of tensors, got {bad}; "
            "return (input, target) from the dataset"
        )
    model.eval()
    try:
        with torch.no_grad():
            out = inputs.call(model, x)
    except Exception as exc:
        shown = ", ".join(f"{n} {_shape(t)} ({t.dtype})" for n, t in zip(inputs.names(x), inputs.parts(x)))
        raise UserFileError(
            f"{f}{user_line(uf.path, exc)}: the first batch does not fit the model: input {shown} "
            f"raised {type(exc).__name__}: {exc}"
        ) from exc
    if reg.output is not None and isinstance(out, torch.Tensor):
        raise UserFileError(f"{f}: register(output={reg.output!r}) names a field, but the model returns one tensor; drop output=")
    try:
        out = pick(out, reg.output)  # a ModelOutput's logits, or the field register(output=...) names
    except TrialError as exc:
        raise UserFileError(f"{f}: {exc}") from exc
    loss_fn = reg.loss or default_loss
    try:
        loss = loss_fn(out, y)
    except Exception as exc:
        raise UserFileError(
            f"{f}{user_line(uf.path, exc)}: the loss on outputs {_shape(out)} and targets {_shape(y)} ({y.dtype}) "
            f"raised {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise UserFileError(
            f"{f}: the loss must return a scalar tensor, got {type(loss).__name__} of shape {_shape(loss)}; reduce it with .mean()"
        )
    metric_fn = reg.metric or default_metric
    try:
        float(metric_fn(out, y))
    except Exception as exc:
        raise UserFileError(
            f"{f}{user_line(uf.path, exc)}: the metric on outputs {_shape(out)} raised {type(exc).__name__}: {exc}"
        ) from exc
    # Last, so that a file with several problems hears first of the one its first batch shows.
    check_same_data(uf.path, fingerprint_of(uf, (train, val)), fingerprint_of(uf, _datasets(uf)), where="two calls")
    described = {
        n: {"shape": list(t.shape[1:]), "dtype": str(t.dtype).removeprefix("torch.")} for n, t in zip(inputs.names(x), inputs.parts(x))
    }
    first = inputs.parts(x)[0]
    info = Probe(tuple(first.shape[1:]), str(first.dtype).removeprefix("torch."), tuple(out.shape[1:]), len(train), len(val), described)
    return info, (train, val)


def user_file_of(source: str | Path | Registration | UserFile) -> UserFile:
    """A user file's path, a Registration made from Python, or a loaded UserFile, as a UserFile."""
    if isinstance(source, UserFile):
        return source
    if isinstance(source, Registration):
        return UserFile.from_registration(source)
    if isinstance(source, (str, Path)):
        return load_user_file(source)
    raise UserFileError(
        f"tune() takes the path of a model file or an effsearch.Registration, got {type(source).__name__}; "
        "pass effsearch.register(model=..., data=...)"
    )
