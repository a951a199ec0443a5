"""What a study fixes when it is created, and the one-line refusal of a resume or worker that differs.

A study's runs are comparable only when they were measured alike over one search space: its set-up (the
latency protocol, the energy meter, the epochs, the world sizes), its search space (Optuna refuses other
categorical choices for a parameter it has seen) and its limits (Optuna's GP sampler refuses other
constraint names) are recorded when it is created, and every later `tune` of it must state the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from effsearch.errors import StudyError
from effsearch.record import StudyMeta
from effsearch.space import train_precisions

__all__ = ["SETUP", "Fixed", "check_limits", "check_setup", "check_space"]


def _range(entry: dict[str, Any] | None) -> str:
    """A numeric dimension as a reader says it: "1..4"."""
    if not entry:
        return "none"
    return f"{entry['low']:g}..{entry['high']:g}"


@dataclass(frozen=True)
class Fixed:
    """One figure of a study's set-up: where its record (StudyMeta) keeps it and how a user states it.

    path: its attributes in the record (then keys, within the search space); fix: what to do to match the
    study, "{}" standing for the study's value; show: the value in words. A study made before the figure
    was recorded used StudyMeta's default for it; where that default is None, such a study is not checked.
    """

    what: str
    path: tuple[str, ...]
    fix: str
    show: Callable[[Any], str] = str


# The set-up: a figure added here is recorded by `_meta` under its path and checked on every resume.
SETUP = (
    Fixed("latency target", ("latency", "target"), "resume it on a host whose latency target is {}"),
    Fixed("latency threads", ("latency", "threads"), "pass --latency-threads {} to resume it"),
    Fixed("latency batch", ("latency", "batch"), "pass --latency-batch {} to resume it"),
    Fixed("latency sequence length", ("latency", "sequence_length"), "pass --latency-seq-len {} (or leave it out) to resume it"),
    Fixed("energy meter", ("energy", "meter"), "pass --energy-meter {} to resume it, on a host where that meter works"),
    Fixed("epochs", ("epochs",), "pass --epochs {} to resume it"),
    Fixed("world sizes", ("space", "world_size"), "resume it where world sizes {} can run (--max-world-size, the host's GPUs or cores)", show=_range),
)


def _at(meta: StudyMeta, path: tuple[str, ...]) -> Any:
    value: Any = meta
    for key in path:
        value = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
    return value


def _plain(value: Any) -> Any:
    """The value as the study's metadata holds it (JSON: tuples are lists)."""
    return json.loads(json.dumps(value))


def check_setup(name: str, recorded: StudyMeta, meta: StudyMeta) -> None:
    """Refuse a `tune` whose set-up (`meta`, as `_meta` makes it) differs from the study's (`recorded`)."""
    for f in SETUP:
        have = _plain(_at(recorded, f.path))
        want = _plain(_at(meta, f.path))
        if have is not None and have != want:
            raise StudyError(
                f"study {name!r} was created with {f.what} {f.show(have)}, not {f.show(want)}; "
                f"{f.fix.format(f.show(have))}, or choose another --study"
            )


def _dimension(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "nothing (not searched)"
    if "choices" in entry:
        return ", ".join(map(str, entry["choices"]))
    words = _range(entry) + (" (log)" if entry.get("log") else "")
    return words + (f" step {entry['step']:g}" if entry.get("step") else "")


def check_space(name: str, recorded: dict[str, Any], space: dict[str, Any], device: str) -> None:
    """Refuse a search space (SearchSpace.to_dict()) other than the study's; device: "cpu" or "cuda" here.

    Dimensions a study made by an older effsearch does not record are not compared: its trials never
    suggested them.
    """
    space = _plain(space)
    for dim, have in recorded.items():
        want = space.get(dim)
        if want == have:
            continue
        said, says = _dimension(have), _dimension(want)
        if said == says:
            said, says = f"{said} (default {have.get('default')})", f"{says} (default {(want or {}).get('default')})"
        unable = [c for c in have.get("choices") or () if dim == "train_precision" and c not in train_precisions(device)]
        if unable:
            fix = f"this {device.upper()} host cannot train in {', '.join(unable)}: join it from a host that can (a GPU)"
        else:
            fix = f"set {dim} to {_dimension(have)} in a --space file to resume it"
        raise StudyError(f"study {name!r} searches {dim} over {said}, not {says}; {fix}, or choose another --study")


def _flags(limits: dict[str, float]) -> str:
    return " ".join(f"--{key.replace('_', '-')} {value:g}" for key, value in sorted(limits.items()))


def check_limits(name: str, recorded: dict[str, float], limits: dict[str, float]) -> None:
    """Refuse limits (Constraints.to_dict()) other than those the study was created with."""
    if {k: float(v) for k, v in recorded.items()} == {k: float(v) for k, v in limits.items()}:
        return
    if not recorded:
        raise StudyError(
            f"study {name!r} was created without limits, not with {_flags(limits)}; a study's limits are fixed "
            "when it is created: drop them to resume it, or choose another --study"
        )
    raise StudyError(
        f"study {name!r} was created with the limits {_flags(recorded)}, not {_flags(limits) or 'none'}; "
        f"pass {_flags(recorded)} (and no other limit) to resume it, or choose another --study"
    )
