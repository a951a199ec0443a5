"""The measured keys a study can optimise, and their directions (from the figures' catalog)."""

from __future__ import annotations

from effsearch.errors import StudyError
from effsearch.figures import ENERGY, FIGURES, LATENCY

__all__ = ["MINIMIZE", "MAXIMIZE", "default_objectives", "parse_objectives", "direction_of"]

MINIMIZE = tuple(k for k, f in FIGURES.items() if f.direction == "minimize")
MAXIMIZE = tuple(k for k, f in FIGURES.items() if f.direction == "maximize")


def default_objectives(metric_key: str) -> tuple[str, ...]:
    return (metric_key, LATENCY.key, ENERGY.key)


def direction_of(key: str, metric_key: str, metric_direction: str) -> str:
    if key == metric_key:
        return metric_direction
    if key in FIGURES:
        return FIGURES[key].direction
    known = ", ".join((metric_key, *MINIMIZE, *MAXIMIZE))
    raise StudyError(f"unknown objective {key!r}; choose among: {known}")


def parse_objectives(text: str | None, metric_key: str, metric_direction: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(keys, directions) from a comma-separated list, or the defaults."""
    keys = tuple(k.strip() for k in text.split(",") if k.strip()) if text else default_objectives(metric_key)
    if len(set(keys)) != len(keys):
        raise StudyError(f"--objectives {text!r} names an objective twice")
    if len(keys) < 1:
        raise StudyError("--objectives needs at least one key")
    return keys, tuple(direction_of(k, metric_key, metric_direction) for k in keys)
