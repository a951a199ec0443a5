"""A sample's input: one tensor, a tuple of tensors (positional arguments) or a dict of tensors (keywords).

Everything that feeds a model goes through here: training calls it (`call`), export names its parts
(`names`: "input" for one tensor, the dict's keys, or input_0.. for a tuple), and onnxruntime takes it
as a feed (`feed`: name -> array). A feed dict is the one form every measurement accepts; a bare array
stands for the single input "input".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "INPUT_NAME",
    "Feed",
    "names",
    "parts",
    "call",
    "to_device",
    "head",
    "feed",
    "as_feed",
    "feed_len",
    "for_session",
    "feeder",
    "rebuild",
    "is_sequence",
    "sequence_length",
    "at_length",
    "padded_length",
    "check_input",
]

INPUT_NAME = "input"
Feed = dict[str, np.ndarray]


def names(x: Any) -> list[str]:
    """The names the exported graph gives the input's parts, in the order the model takes them."""
    if isinstance(x, Mapping):
        return [str(k) for k in x]
    if isinstance(x, (tuple, list)):
        return [f"input_{i}" for i in range(len(x))]
    return [INPUT_NAME]


def parts(x: Any) -> list[torch.Tensor]:
    """The input's tensors, in the order of names(x)."""
    if isinstance(x, Mapping):
        return list(x.values())
    if isinstance(x, (tuple, list)):
        return list(x)
    return [x]


def call(model: Any, x: Any) -> Any:
    """model(x), model(*x) or model(**x), as the input's form says."""
    if isinstance(x, Mapping):
        return model(**x)
    if isinstance(x, (tuple, list)):
        return model(*x)
    return model(x)


def rebuild(x: Any, new: list[Any]) -> Any:
    """An input of x's form (tensor, tuple or dict, the same names) holding the parts `new`."""
    if isinstance(x, Mapping):
        return dict(zip(x.keys(), new))
    if isinstance(x, (tuple, list)):
        return tuple(new)
    return new[0]


def to_device(x: Any, device: torch.device, non_blocking: bool = False) -> Any:
    return rebuild(x, [t.to(device, non_blocking=non_blocking) for t in parts(x)])


def head(x: Any, n: int) -> Any:
    """The first n samples of a batched input."""
    return rebuild(x, [t[:n] for t in parts(x)])


def feed(x: Any) -> Feed:
    """The onnxruntime feed of a batched torch input (or arrays)."""
    return {name: (t.numpy() if isinstance(t, torch.Tensor) else np.asarray(t)) for name, t in zip(names(x), parts(x))}


def as_feed(sample: Any) -> Feed:
    """A feed dict as is; a bare array as the single input's feed."""
    if isinstance(sample, Mapping):
        return dict(sample)
    return {INPUT_NAME: sample}


def feeder(session: Any) -> Any:
    """sample -> the feed an onnxruntime session takes: the parts its graph has inputs for (an input the
    model never reads may have been dropped from the graph). The session is asked once."""
    wanted = {i.name for i in session.get_inputs()}
    return lambda sample: {k: v for k, v in as_feed(sample).items() if k in wanted}


def for_session(session: Any, sample: Any) -> Feed:
    """feeder(session)(sample), for a single feed."""
    return feeder(session)(sample)


def feed_len(sample: Any) -> int:
    """Samples in a feed (its batch dimension)."""
    return len(next(iter(as_feed(sample).values())))


# Tokens and their masks: integer or bool parts; batched, their second axis is the sequence.
def _token_dtype(dtype: torch.dtype | None) -> bool:
    return dtype is not None and not dtype.is_floating_point and not dtype.is_complex


def _token_array(v: np.ndarray) -> bool:
    return v.ndim >= 2 and v.dtype.kind in "iub"


def is_sequence(t: torch.Tensor) -> bool:
    """Whether a batched part is tokens or their mask, whose second dimension export may keep dynamic."""
    return t.dim() >= 2 and _token_dtype(t.dtype)


def sequence_length(sample: Any) -> int | None:
    """The sequence length of a feed's token parts, or None where it has none."""
    lengths = {v.shape[1] for v in as_feed(sample).values() if _token_array(v)}
    return max(lengths) if lengths else None


def padded_length(described: Mapping[str, Mapping[str, Any]]) -> int | None:
    """The sequence length of the token parts of a probed input ({name: {"shape", "dtype"}} per sample),
    or None where no part is tokens or a mask: the length the data pads them to."""
    lengths = [d["shape"][0] for d in described.values() if d["shape"] and _token_dtype(getattr(torch, str(d["dtype"]), None))]
    return max(lengths) if lengths else None


def at_length(sample: Any, length: int) -> Any:
    """The feed (or array) with its token parts at `length` positions: a padded set timed shorter, or a batch
    that a collate function padded to its own longest sample padded on with 0 (a mask's "not there")."""
    def cut(v: np.ndarray) -> np.ndarray:
        if not _token_array(v):
            return v
        if v.shape[1] >= length:
            return v[:, :length]
        return np.pad(v, [(0, 0), (0, length - v.shape[1])] + [(0, 0)] * (v.ndim - 2))

    return {k: cut(v) for k, v in sample.items()} if isinstance(sample, Mapping) else cut(sample)


def check_input(x: Any) -> str | None:
    """Why x is not an input effsearch can feed (a tensor, a tuple of tensors, a dict of tensors), or None."""
    if isinstance(x, torch.Tensor):
        return None
    if isinstance(x, (Mapping, tuple, list)):
        if not len(x):
            return f"an empty {type(x).__name__}"
        bad = [(n, t) for n, t in zip(names(x), parts(x)) if not isinstance(t, torch.Tensor)]
        if bad:
            name, t = bad[0]
            # Batched by the DataLoader: strings arrive as a tuple of str, say so.
            of = f" of {type(t[0]).__name__}" if isinstance(t, (tuple, list)) and len(t) else ""
            return f"{name} is a {type(t).__name__}{of}, not a tensor"
        if isinstance(x, Mapping) and not all(isinstance(k, str) and k.isidentifier() for k in x):
            return f"dict keys must be names of the model's arguments, got {list(x)}"
        return None
    return f"a {type(x).__name__}"
