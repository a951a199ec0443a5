"""`--space FILE.toml`: override search dimensions, every bad value refused in one line."""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from effsearch.errors import SpaceError
from effsearch.space.dimensions import EXTRA_PRECISIONS, IMPORTANCES, OPTIMIZERS, PRECISIONS, PRUNE_WHEN, SCHEDULES
from effsearch.space.dimensions import TRAIN_PRECISIONS, train_precisions
from effsearch.space.dimensions import Dimension, SearchSpace, default_dimensions

__all__ = ["load_space"]


@dataclass(frozen=True)
class _Rule:
    """The values one dimension takes: names, or whole numbers or numbers within bounds."""

    kind: type  # str, int or float
    names: tuple[str, ...] = ()
    minimum: float = -math.inf
    positive: bool = False  # the minimum itself is not allowed
    below: float | None = None  # values must be below this
    example: Any = None

    @property
    def what(self) -> str:
        if self.kind is str:
            return "one of " + ", ".join(_shown(n) for n in self.names)
        noun = "a whole number" if self.kind is int else "a number"
        if self.below is not None:
            return f"{noun} in [{self.minimum:g}, {self.below:g})"
        if self.minimum > -math.inf:
            return f"{noun} {'>' if self.positive else '>='} {self.minimum:g}"
        return noun

    def problem(self, v: Any) -> str | None:
        """Why v is not a value of this rule (e.g. "is not a number"), or None when it is."""
        if self.kind is str:
            return None if isinstance(v, str) and v in self.names else f"is not {self.what}"
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return "is not a number"
        if not math.isfinite(v):
            return "is not a finite number"
        if self.kind is int and not float(v).is_integer():
            return "is not a whole number"
        if v < self.minimum or (self.positive and v == self.minimum) or (self.below is not None and v >= self.below):
            return f"is not {self.what}"
        return None

    def cast(self, v: Any) -> Any:
        return v if self.kind is str else self.kind(v)


def _names(names: tuple[str, ...]) -> _Rule:
    return _Rule(str, names=names, example=names[0])


_RULES = {
    "batch_size": _Rule(int, minimum=1, example=64),
    "lr": _Rule(float, minimum=0.0, positive=True, example=0.003),
    "lr_schedule": _names(SCHEDULES),
    "clip_norm": _Rule(float, minimum=0.0, example=1.0),
    "prune_ratio": _Rule(float, minimum=0.0, below=1.0, example=0.5),
    "precision": _names(PRECISIONS + EXTRA_PRECISIONS),
    "world_size": _Rule(int, minimum=1, example=1),
    "optimizer": _names(OPTIMIZERS),
    "warmup_frac": _Rule(float, minimum=0.0, below=1.0, example=0.05),
    "prune_importance": _names(IMPORTANCES),
    "prune_when": _names(PRUNE_WHEN),
    "train_precision": _names(TRAIN_PRECISIONS),
    "distill": _Rule(float, minimum=0.0, below=1.0, example=0.5),
    "distill_temperature": _Rule(float, minimum=0.0, positive=True, example=4.0),
}
_INT_STEP = _Rule(int, minimum=1, example=1)
_FLOAT_STEP = _Rule(float, minimum=0.0, positive=True, example=0.05)
_KEYS = ("value", "choices", "low", "high", "log", "step", "default")
_RANGE_KEYS = ("low", "high", "log", "step")


def _shown(v: Any) -> str:
    """v as it would be written in TOML, on one line."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
        return f"{v:.1f}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_shown(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_shown(x)}" for k, x in v.items()) + "}"
    return str(v)


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
        return f"{self.name} = {_shown(value)}" if self.bare else f"{key} = {_shown(value)}"

    def key(self, key: str, value: Any) -> str:
        """`space.toml: [lr] low = "zero"`, naming the file, the dimension and the value."""
        return f"{self.path}: {self.written(key, value)}" if self.bare else f"{self.table} {self.written(key, value)}"


def _checked(rule: _Rule, at: _Where, key: str, v: Any) -> Any:
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
    rule = _RULES[base.name]
    if not isinstance(spec, dict):
        # A bare value fixes the dimension.
        return _fixed(base, rule, _Where(path, base.name, bare=True), "value", spec)
    at = _Where(path, base.name, bare=False)
    unknown = sorted(set(spec) - set(_KEYS))
    if unknown:
        # In TOML a bare `name = value` written after a [table] belongs to that table.
        moved = [k for k in unknown if k in _RULES]
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


def _fixed(base: Dimension, rule: _Rule, at: _Where, key: str, raw: Any) -> Dimension:
    v = _checked(rule, at, key, raw)
    if base.choices is not None:
        return replace(base, choices=(v,), default=v)
    return replace(base, low=v, high=v, default=v, step=None, log=False)


def _choices(base: Dimension, rule: _Rule, at: _Where, spec: dict[str, Any]) -> Dimension:
    raw = spec["choices"]
    example = _shown([rule.example])
    if not isinstance(raw, list):
        fix = _shown([raw]) if rule.problem(raw) is None else example
        raise SpaceError(f"{at.key('choices', raw)} is not a list; write choices = {fix}")
    if not raw:
        raise SpaceError(f"{at.key('choices', raw)} is empty; give at least one value, e.g. choices = {example}")
    choices = []
    for v in raw:
        problem = rule.problem(v)
        if problem is not None:
            fix = "keep only those" if rule.kind is str else f"write e.g. choices = {example}"
            raise SpaceError(f"{at.key('choices', raw)}: {_shown(v)} {problem}; {fix}")
        v = rule.cast(v)
        if v in choices:
            raise SpaceError(f"{at.key('choices', raw)}: {_shown(v)} is listed twice; list each value once")
        choices.append(v)
    if "default" in spec:
        default = _checked(rule, at, "default", spec["default"])
    else:
        # The built-in default where the new choices keep it, else the first choice.
        default = base.default if base.default in choices else choices[0]
    return replace(base, choices=tuple(choices), low=None, high=None, log=False, step=None, default=default)


def _range(base: Dimension, rule: _Rule, at: _Where, spec: dict[str, Any]) -> Dimension:
    given = ", ".join(k for k in _RANGE_KEYS if k in spec)
    if rule.kind is str:
        example = _shown(list(rule.names[:2]))
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
            f"{at.table}: needs low <= high, got low = {_shown(low)}, high = {_shown(high)}{which}; swap or widen them"
        )
    log = spec.get("log", False if base.choices is not None else base.log)
    if not isinstance(log, bool):
        raise SpaceError(f"{at.key('log', log)} is not true or false; write log = true or log = false")
    step = base.step if base.choices is None else None
    if "step" in spec:
        step = _checked(_INT_STEP if rule.kind is int else _FLOAT_STEP, at, "step", spec["step"])
    if log and low <= 0:
        raise SpaceError(f"{at.table}: a log range needs low > 0, got low = {_shown(low)}; raise low or set log = false")
    if log and step is not None and not (rule.kind is int and step == 1):
        if "log" in spec and "step" in spec:
            raise SpaceError(f"{at.table}: log = true cannot go with step = {_shown(step)}; drop step or set log = false")
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
                f"{at.table}: high - low = {_shown(float(span))} is not a multiple of step = {_shown(step)}{which}; "
                f"make high {_shown(rule.cast(fit))} or {_shown(rule.cast(fit + d_step))}"
            )
    default = _checked(rule, at, "default", spec["default"]) if "default" in spec else base.default
    return replace(base, choices=None, low=low, high=high, log=log, step=step, integer=rule.kind is int, default=default)


def _check_default(d: Dimension, at: _Where, given: bool) -> None:
    """The default (the baseline's value) must be one the dimension can take."""
    which = f"default = {_shown(d.default)}" if given else f"the built-in default {_shown(d.default)}"
    if d.choices is not None:
        if d.default not in d.choices:
            choices = _shown(list(d.choices))
            raise SpaceError(f"{at.table}: {which} is not among the choices {choices}; add it or set default to one of them")
        return
    if not (d.low <= d.default <= d.high):
        where = f"[{_shown(d.low)}, {_shown(d.high)}]"
        raise SpaceError(f"{at.table}: {which} lies outside {where}; set default to a value in that range")
    if d.step is not None:
        k = (Decimal(str(d.default)) - Decimal(str(d.low))) / Decimal(str(d.step))
        if k != k.to_integral_value():
            raise SpaceError(
                f"{at.table}: {which} is not low + a whole number of steps "
                f"(low = {_shown(d.low)}, step = {_shown(d.step)}); set default on that grid"
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
            f"{path}: [train_precision] {_shown(extra[0])} cannot train on this machine ({device}: fp16 needs a GPU); "
            f"choose from {_shown(list(allowed))}"
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
