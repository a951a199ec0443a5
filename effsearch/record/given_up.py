"""What a study has given up (study/give_up.py) and the failures that led there, one attribute per entry.

Workers record failures at the same time: a dict held in one study attribute, read, changed and written
back, loses the update of whichever worker wrote first. Here each failure, and each value given up, is an
attribute of its own (as the untrained figures are), so concurrent writers never overwrite each other.
Studies that kept the whole dict in one attribute are read as well.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import optuna

__all__ = ["add_failure", "give_up", "read_failures", "read_given_up", "write_failures", "write_given_up"]

# One attribute per value given up, and per failure (a value and where it failed).
_GIVEN_UP = "given_up:"  # + the value: why
_FAILURE = "structural_failure:"  # + the value + ":" + a digest of where: {"where", "trial", "reason"}
# How studies kept them before: one dict each.
_GIVEN_UP_DICT = "structural_failures"
_FAILURES_DICT = "structural_failure_log"


def _failure_key(what: str, where: str) -> str:
    return f"{_FAILURE}{what}:{hashlib.sha256(where.encode()).hexdigest()[:16]}"


def read_given_up(study: optuna.Study) -> dict[str, str]:
    """Search values given up for this model (a precision, or "prune_ratio"), each with its reason."""
    attrs = study.user_attrs
    given_up = {str(k): str(v) for k, v in (attrs.get(_GIVEN_UP_DICT) or {}).items()}
    given_up.update({k.removeprefix(_GIVEN_UP): str(v) for k, v in attrs.items() if k.startswith(_GIVEN_UP)})
    return given_up


def read_failures(study: optuna.Study) -> dict[str, list[dict[str, Any]]]:
    """The structural failures seen so far, per value: where each happened, in which trial, and why
    (one per place, in trial order)."""
    attrs = study.user_attrs
    seen: dict[str, dict[str, dict[str, Any]]] = {}
    for what, failures in (attrs.get(_FAILURES_DICT) or {}).items():
        for f in failures:
            seen.setdefault(what, {}).setdefault(str(f["where"]), dict(f))
    for key, f in attrs.items():
        if key.startswith(_FAILURE) and isinstance(f, dict):
            what = key.removeprefix(_FAILURE).rsplit(":", 1)[0]
            seen.setdefault(what, {}).setdefault(str(f["where"]), dict(f))
    return {what: sorted(by_where.values(), key=lambda f: (int(f.get("trial", 0)), json.dumps(f, sort_keys=True)))
            for what, by_where in seen.items()}


def add_failure(study: optuna.Study, what: str, *, where: str, trial: int, reason: str) -> None:
    """Record one structural failure of `what` (where: the settings it failed with); the first failure
    recorded with these settings stays."""
    key = _failure_key(what, where)
    if key not in study.user_attrs:
        study.set_user_attr(key, {"where": where, "trial": trial, "reason": reason})


def give_up(study: optuna.Study, what: str, why: str) -> None:
    """Record that `what` is no longer searched, and why."""
    study.set_user_attr(_GIVEN_UP + what, why)


def write_given_up(study: optuna.Study, given_up: dict[str, str]) -> None:
    """Record every entry of `given_up` (entries already recorded are kept)."""
    for what, why in given_up.items():
        give_up(study, what, why)


def write_failures(study: optuna.Study, failures: dict[str, list[dict[str, Any]]]) -> None:
    """Record every failure in `failures` (failures already recorded are kept)."""
    for what, entries in failures.items():
        for f in entries:
            add_failure(study, what, where=str(f["where"]), trial=int(f["trial"]), reason=str(f["reason"]))
