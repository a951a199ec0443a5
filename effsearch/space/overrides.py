"""`--space FILE.toml`: override search dimensions, every bad value refused in one line."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from effsearch.errors import SpaceError
from effsearch.space.catalog import CATALOG, default_dimensions
from effsearch.space.dimensions import Dimension, train_precisions
from effsearch.space.rules import Rule, shown
from effsearch.space.search_space import SearchSpace

__all__ = ["load_space"]

_INT_STEP = Rule(int, minimum=1, example=1)
_FLOAT_STEP = Rule(float, minimum=0.0, positive=True, example=0.05)
_KEYS = ("value", "choices", "low", "high", "log", "step", "default")
_RANGE_KEYS = ("low", "high", "log", "step")


@dataclass(frozen=True)
class _Where:
    """Where in the space file a dimension is set: `[name]` table, or a bare `name = value`."""

    path: Path
    name: str
    bare: bool

    @property
    def table(self) -> str:
        return f"{self.path}: {self.name}" if self.bare else f"{self.path}: [{self.name}]"

    def written(self, key: str, value: Any) -> str:
        """The line `key = value` as it stands (or would stand) in this dimension's table."""
        return f"{self.name} = {shown(value)}" if self.bare else f"{key} = {shown(value)}"

    def key(self, key: str, value: Any) -> str:
        """`space.toml: [lr] low = "zero"`, naming the file, the dimension and the value."""
        return f"{self.path}: {self.written(key, value)}" if self.bare else f"{self.table} {self.written(key, value)}"


def _checked(rule: Rule, at: _Where, key: str, v: Any) -> Any:
    """v as the dimension's type, or a SpaceError naming the key and v, with the fix."""
    problem = rule.problem(v)
    if problem is None:
        return rule.cast(v)
    fix = "pick one of those" if rule.kind is str else f"write e.g. {at.written(key, rule.example)}"
    raise SpaceError(f"{at.key(key, v)} {problem}; {fix}")


def _override(base: Dimension, spec: Any, path: Path) -> Dimension:
    """base with one dimension's entry of the space file applied; SpaceError for anything invalid.

    A key given in the file replaces a built-in one it cannot go with: a log range has no step.
    """
    rule = CATALOG[base.name].rule
    if not isinstance(spec, dict):
        # A bare value fixes the dimension.
        return _fixed(base, rule, _Where(path, base.name, bare=True), "value", spec)
    at = _Where(path, base.name, bare=False)
    unknown = sorted(set(spec) - set(_KEYS))
    if unknown:
        # In TOML a bare `name = value` written after a [table] belongs to that table.
        moved = [k for k in unknown if k in CATALOG]
        if moved:
            raise SpaceError(
                f"{at.table}: unknown key(s) {unknown}; a bare `{moved[0]} = ...` after a [table] belongs to it in TOML, "
                "so move it above the first table"
            )
        raise SpaceError(f"{at.table}: unknown key(s) {unknown}; use value, choices, low/high/log/step, default")
    if not spec:
        raise SpaceError(f"{at.table}: the table is empty; give value, choices, low and high, or default")
    ranged = [k for k in _RANGE_KEYS if k in spec]
    if "value" in spec:
        if len(spec) > 1:
            others = ", ".join(k for k in spec if k != "value")
            raise SpaceError(f"{at.table}: value fixes the dimension, so {others} cannot go with it; drop one or the other")
        return _fixed(base, rule, at, "value", spec["value"])
    if "choices" in spec:
        if ranged:
            raise SpaceError(f"{at.table}: choices cannot go with {', '.join(ranged)}; give choices, or a range with low and high")
        new = _choices(base, rule, at, spec)
    elif ranged:
        new = _range(base, rule, at, spec)
    else:
        new = replace(base, default=_checked(rule, at, "default", spec["default"]))
    _check_default(new, at, "default" in spec)
    return new


def _fixed(base: Dimension, rule: Rule, at: _Where, key: str, raw: Any) -> Dimension:
    v = _checked(rule, at, key, raw)
    if base.choices is not None:
        return replace(base, choices=(v,), default=v)
    return replace(base, low=v, high=v, default=v, step=None, log=False)


def _choices(base: Dimension, rule: Rule, at: _Where, spec: dict[str, Any]) -> Dimension:
    raw = spec["choices"]
    example = shown([rule.example])
    if not isinstance(raw, list):
        fix = shown([raw]) if rule.problem(raw) is None else example
        raise SpaceError(f"{at.key('choices', raw)} is not a list; write choices = {fix}")
    if not raw:
        raise SpaceError(f"{at.key('choices', raw)} is empty; give at least one value, e.g. choices = {example}")
    choices = []
    for v in raw:
        problem = rule.problem(v)
        if problem is not None:
            fix = "keep only those" if rule.kind is str else f"write e.g. choices = {example}"
            raise SpaceError(f"{at.key('choices', raw)}: {shown(v)} {problem}; {fix}")
        v = rule.cast(v)
        if v in choices:
            raise SpaceError(f"{at.key('choices', raw)}: {shown(v)} is listed twice; list each value once")
        choices.append(v)
    if "default" in spec:
        default = _checked(rule, at, "default", spec["default"])
    else:
        # The built-in default where the new choices keep it, else the first choice.
        default = base.default if base.default in choices else choices[0]
    return replace(base, choices=tuple(choices), low=None, high=None, log=False, step=None, default=default)


def _range(base: Dimension, rule: Rule, at: _Where, spec: dict[str, Any]) -> Dimension:
    given = ", ".join(k for k in _RANGE_KEYS if k in spec)
    if rule.kind is str:
        example = shown(list(rule.names[:2]))
        raise SpaceError(f"{at.table}: takes choices, not a range ({given}); write e.g. choices = {example}")
    if base.choices is not None and "low" not in spec and "high" not in spec:
        raise SpaceError(f"{at.table}: {given} needs a range, and {base.name} has choices by default; give low and high too")
    # Where the built-in dimension has choices, a missing bound is its default.
    def bound(key: str, built_in: Any) -> Any:
        return _checked(rule, at, key, spec[key]) if key in spec else rule.cast(built_in)

    low = bound("low", base.default if base.choices is not None else base.low)
    high = bound("high", base.default if base.choices is not None else base.high)
    if low > high:
        which = "" if "low" in spec and "high" in spec else f" ({'high' if 'low' in spec else 'low'} is the built-in one)"
        raise SpaceError(
            f"{at.table}: needs low <= high, got low = {shown(low)}, high = {shown(high)}{which}; swap or widen them"
        )
    log = spec.get("log", False if base.choices is not None else base.log)
    if not isinstance(log, bool):
        raise SpaceError(f"{at.key('log', log)} is not true or false; write log = true or log = false")
    step = base.step if base.choices is None else None
    if "step" in spec:
        step = _checked(_INT_STEP if rule.kind is int else _FLOAT_STEP, at, "step", spec["step"])
    if log and low <= 0:
        raise SpaceError(f"{at.table}: a log range needs low > 0, got low = {shown(low)}; raise low or set log = false")
    if log and step is not None and not (rule.kind is int and step == 1):
        if "log" in spec and "step" in spec:
            raise SpaceError(f"{at.table}: log = true cannot go with step = {shown(step)}; drop step or set log = false")
        if "step" in spec:
            log = False  # the given step replaces the built-in log scale
        else:
            step = None  # the given log scale replaces the built-in step
    if step is not None and high > low:
        span, d_step = Decimal(str(high)) - Decimal(str(low)), Decimal(str(step))
        if span % d_step:
            fit = Decimal(str(low)) + (span // d_step) * d_step
            which = "" if "step" in spec else " (the built-in step)"
            raise SpaceError(
                f"{at.table}: high - low = {shown(float(span))} is not a multiple of step = {shown(step)}{which}; "
                f"make high {shown(rule.cast(fit))} or {shown(rule.cast(fit + d_step))}"
            )
    default = _checked(rule, at, "default", spec["default"]) if "default" in spec else base.default
    return replace(base, choices=None, low=low, high=high, log=log, step=step, integer=rule.kind is int, default=default)


def _check_default(d: Dimension, at: _Where, given: bool) -> None:
    """The default (the baseline's value) must be one the dimension can take."""
    which = f"default = {shown(d.default)}" if given else f"the built-in default {shown(d.default)}"
    if d.choices is not None:
        if d.default not in d.choices:
            choices = shown(list(d.choices))
            raise SpaceError(f"{at.table}: {which} is not among the choices {choices}; add it or set default to one of them")
        return
    if not (d.low <= d.default <= d.high):
        where = f"[{shown(d.low)}, {shown(d.high)}]"
        raise SpaceError(f"{at.table}: {which} lies outside {where}; set default to a value in that range")
    if d.step is not None:
        k = (Decimal(str(d.default)) - Decimal(str(d.low))) / Decimal(str(d.step))
        if k != k.to_integral_value():
            raise SpaceError(
                f"{at.table}: {which} is not low + a whole number of steps "
                f"(low = {shown(d.low)}, step = {shown(d.step)}); set default on that grid"
            )


def _check_levers(dims: dict[str, Dimension], path: Path, trained: bool, device: str) -> None:
    """Refuse training levers the model or the machine cannot use."""
    d = dims["distill"]
    weights = d.choices if d.choices is not None else (d.low, d.high)
    if not trained and any(w != 0.0 for w in weights):
        raise SpaceError(
            f"{path}: [distill] needs a teacher: distillation works on a model that arrives trained "
            "(register(trained=True)); drop [distill] from the space file"
        )
    allowed = train_precisions(device)
    t = dims["train_precision"]
    extra = [c for c in (t.choices or ()) if c not in allowed]
    if extra:
        raise SpaceError(
            f"{path}: [train_precision] {shown(extra[0])} cannot train on this machine ({device}: fp16 needs a GPU); "
            f"choose from {shown(list(allowed))}"
        )


def load_space(path: str | Path | None, max_world_size: int = 1, trained: bool = False, device: str = "cpu") -> SearchSpace:
    """The default space, with the TOML file's tables overriding single dimensions.

    A table per dimension: `[lr] low = 1e-4  high = 1e-2  log = true`, `[precision] choices = ["fp32", "int8_static"]`,
    or a bare `prune_ratio = 0.0` to fix one. Anything invalid raises a one-line SpaceError naming the file,
    the dimension, the value and the fix, before any study exists. trained: start from the fine-tuning
    defaults of a model that arrives trained; device: the machine's ("cpu" or "cuda"), whose training
    precisions are the choices (fp16 training on a GPU only).
    """
    dims = default_dimensions(max_world_size, trained, device)
    if path is None:
        return SearchSpace(dims)
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SpaceError(f"{path}: no such space file; check the path given to --space") from exc
    except OSError as exc:
        raise SpaceError(f"{path}: cannot read the space file ({exc.strerror or exc}); pass a readable TOML file") from exc
    except UnicodeDecodeError as exc:
        raise SpaceError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the space file as UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SpaceError(f"{path}: not valid TOML: {exc}; fix that line") from exc
    for name, spec in data.items():
        if name not in dims:
            raise SpaceError(f"{path}: unknown dimension {name!r}; known: {', '.join(dims)}")
        dims[name] = _override(dims[name], spec, path)
    _check_levers(dims, path, trained, device)
    return SearchSpace(dims)
