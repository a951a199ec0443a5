"""What effsearch writes on a study: its metadata, the user's limits, what was given up, cached figures.

Every study-level user-attribute key effsearch stores is spelled here and nowhere else.
"""

from __future__ import annotations

from typing import Any

import optuna

__all__ = [
    "read_meta",
    "write_meta",
    "read_limits",
    "write_limits",
    "read_given_up",
    "write_given_up",
    "read_failures",
    "write_failures",
    "read_untrained",
    "write_untrained",
    "read_remeasured",
    "write_remeasured",
]

# Study-level user attributes.
_META = "effsearch"
_LIMITS = "constraints"
_GIVEN_UP = "structural_failures"
_FAILURES = "structural_failure_log"
_REMEASURED = "remeasured:"  # + a host: the front re-measured together there
_UNTRAINED = "untrained:"  # + a configuration's key: its precisions' untrained figures


def read_meta(study: optuna.Study) -> dict[str, Any]:
    """What effsearch recorded about the study when it created it ({} for a study it did not make)."""
    return dict(study.user_attrs.get(_META) or {})


def write_meta(study: optuna.Study, meta: dict[str, Any]) -> None:
    study.set_user_attr(_META, meta)


def read_limits(study: optuna.Study) -> dict[str, float]:
    """The user's limits (Constraints.to_dict()) the study was last tuned with."""
    return dict(study.user_attrs.get(_LIMITS) or {})


def write_limits(study: optuna.Study, limits: dict[str, float]) -> None:
    study.set_user_attr(_LIMITS, limits)


def read_given_up(study: optuna.Study) -> dict[str, str]:
    """Search values given up for this model (a precision, or "prune_ratio"), each with its reason."""
    return dict(study.user_attrs.get(_GIVEN_UP) or {})


def write_given_up(study: optuna.Study, given_up: dict[str, str]) -> None:
    study.set_user_attr(_GIVEN_UP, given_up)


def read_failures(study: optuna.Study) -> dict[str, list[dict[str, Any]]]:
    """The structural failures seen so far, per value: where each happened, in which trial, and why."""
    return {k: list(v) for k, v in (study.user_attrs.get(_FAILURES) or {}).items()}


def write_failures(study: optuna.Study, failures: dict[str, list[dict[str, Any]]]) -> None:
    study.set_user_attr(_FAILURES, failures)


def read_untrained(study: optuna.Study, key: str) -> dict[str, dict[str, Any]]:
    """The cached untrained figures of the configuration `key`, per precision ({} when not measured yet)."""
    return dict(study.user_attrs.get(_UNTRAINED + key) or {})


def write_untrained(study: optuna.Study, key: str, figures: dict[str, dict[str, Any]]) -> None:
    # One attribute per configuration: workers caching different shapes never overwrite each other.
    study.set_user_attr(_UNTRAINED + key, figures)


def read_remeasured(study: optuna.Study) -> dict[str, Any] | None:
    """The newest re-measurement of the front (one host's, never mixed with another's), or None."""
    entries = [v for k, v in study.user_attrs.items() if k.startswith(_REMEASURED) and isinstance(v, dict)]
    return max(entries, key=lambda e: e.get("when", 0.0)) if entries else None


def write_remeasured(study: optuna.Study, entry: dict[str, Any]) -> None:
    study.set_user_attr(_REMEASURED + str(entry["host"]), entry)
