"""A plugin's contract, read from its kind's base: the annotated attributes and the declared methods."""

from __future__ import annotations

import functools
import inspect
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from effsearch.plugins.kinds import KINDS, Plugin, base_of

__all__ = ["Contract", "contract_error", "contract_of"]


@dataclass(frozen=True)
class Contract:
    """What a plugin of one kind must have: typed attributes, and methods (the abstract ones to implement)."""

    kind: str
    attributes: tuple[tuple[str, Any], ...]  # (name, annotated type), ClassVar unwrapped
    methods: tuple[str, ...]
    abstract: tuple[str, ...]

    @property
    def label(self) -> str:
        words = self.kind.replace("_", " ")
        return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


@functools.cache
def contract_of(base: type[Plugin]) -> Contract:
    """The contract `base` declares: its (and its bases') public annotations and public methods."""
    hints = typing.get_type_hints(base)
    attributes = tuple(
        (name, typing.get_args(hint)[0] if typing.get_origin(hint) is ClassVar else hint)
        for name, hint in hints.items()
        if not name.startswith("_") and name != "kind"  # the kind is how the base was found
    )
    methods = tuple(
        name
        for name in dir(base)
        if not name.startswith("_") and name not in hints and not isinstance(inspect.getattr_static(base, name), property)
    )
    return Contract(base.kind, attributes, methods, tuple(sorted(base.__abstractmethods__)))


def _expected(hint: Any) -> str:
    """The values `hint` allows, in words."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_expected(h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    return {str: "a non-empty string", bool: "True or False", float: "a finite number", int: "a whole number", type(None): "None"}.get(
        hint, getattr(hint, "__name__", str(hint))
    )


def _fits(value: Any, hint: Any) -> bool:
    """Whether `value` is what the annotation `hint` allows (the few types the bases use)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint in (int, float):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and math.isfinite(value) and (hint is float or isinstance(value, int))
    if hint is str:
        return isinstance(value, str) and bool(value)
    return isinstance(value, hint)


def contract_error(obj: Any, where: str) -> str | None:
    """What keeps `obj` (loaded from `where`) from being a plugin of its declared kind, or None."""
    kind = getattr(obj, "kind", None)
    base = base_of(kind) if isinstance(kind, str) else None
    if base is None:
        return f"not a plugin: {where} has kind {kind!r}, not one of {', '.join(KINDS)}"
    contract = contract_of(base)
    missing = object()
    for name, hint in contract.attributes:
        value = getattr(obj, name, missing)
        if value is missing:
            return f"not {contract.label}: {where} has no `{name}` ({_expected(hint)})"
        if not _fits(value, hint):
            return f"not {contract.label}: {where}.{name} is {value!r}, not {_expected(hint)}"
    for name in contract.methods:
        if not callable(getattr(obj, name, None)):
            return f"not {contract.label}: {where} has no {name}() method"
    left = sorted(getattr(obj, "__abstractmethods__", ()))
    if left:
        return f"not {contract.label}: {where} leaves {', '.join(f'{m}()' for m in left)} abstract"
    return None
