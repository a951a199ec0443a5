"""What effsearch writes on a study: its metadata, the user's limits, what was given up, cached figures.

Every study-level user-attribute key effsearch stores is spelled here, or for what was given up in
given_up.py, and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import optuna

from effsearch.errors import StudyError

# What was given up, and the failures that led there: one attribute per entry (workers write them at once).
from effsearch.record.given_up import read_failures, read_given_up, write_failures, write_given_up
from effsearch.record.meta import StudyMeta

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
    "join_workers",
    "read_workers",
]

# Study-level user attributes.
_META = "effsearch"
_LIMITS = "constraints"
_REMEASURED = "remeasured:"  # + a host: the front re-measured together there
_UNTRAINED = "untrained:"  # + a configuration's key: its precisions' untrained figures
_WORKER = "worker:"  # + a worker process's token: its rank among the study's workers, its seed, its host


def read_meta(study: optuna.Study) -> StudyMeta:
    """What effsearch recorded about the study when it created it (`exists` False for a study it did not make)."""
    return StudyMeta.from_dict(study.user_attrs.get(_META) or {}, names=study.metric_names or (), count=len(study.directions))


def write_meta(study: optuna.Study, meta: StudyMeta) -> None:
    study.set_user_attr(_META, meta.to_dict())


def read_limits(study: optuna.Study) -> dict[str, float]:
    """The user's limits (Constraints.to_dict()) the study was last tuned with."""
    return dict(study.user_attrs.get(_LIMITS) or {})


def write_limits(study: optuna.Study, limits: dict[str, float]) -> None:
    study.set_user_attr(_LIMITS, limits)


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


def read_workers(study: optuna.Study) -> list[dict[str, Any]]:
    """The processes that have run the study (each `tune`, each worker), in the order they joined it."""
    entries = [v for k, v in study.user_attrs.items() if k.startswith(_WORKER) and isinstance(v, dict)]
    return sorted(entries, key=lambda e: e.get("rank", 0))


def join_workers(storage: optuna.storages.BaseStorage, study_id: int, token: str, entry: Callable[[int], dict[str, Any]]) -> int:
    """The rank among the study's workers of the process `token` (0 for the first to join), recorded with entry(rank).

    Workers starting together never share a rank. On an RDB storage the rank is counted and the process
    recorded in one transaction that holds the study's row lock, as Optuna numbers its trials (on SQLite the
    insert takes the database's write lock before the count). Through a storage proxy, which offers no lock,
    see _claim_rank. A process that joined before keeps its rank.
    """
    if not isinstance(storage, optuna.storages.RDBStorage):
        return _claim_rank(storage, study_id, _WORKER + token, entry)
    # Optuna's storage has no atomic counter: its own tables are used here, the way it creates trials.
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from sqlalchemy import func

    key = _WORKER + token
    attr = models.StudyUserAttributeModel
    with _create_scoped_session(storage.scoped_session) as session:
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        mine = session.query(attr).filter(attr.study_id == study_id, attr.key == key).one_or_none()
        if mine is not None:
            return int(json.loads(mine.value_json)["rank"])
        row = attr(study_id=study_id, key=key, value_json="null")
        session.add(row)
        session.flush()
        rank = int(
            session.query(func.count(attr.study_user_attribute_id))
            .filter(attr.study_id == study_id, attr.key.startswith(_WORKER), attr.key != key)
            .scalar()
        )
        row.value_json = json.dumps({**entry(rank), "rank": rank})
    return rank


def _claim_rank(storage: optuna.storages.BaseStorage, study_id: int, key: str, entry: Callable[[int], dict[str, Any]]) -> int:
    """A rank no other worker holds or will take, from study user attributes alone (a storage proxy has no lock).

    Renaming by snapshots: propose a rank in this worker's own attribute, then read every worker's (one
    query, a consistent snapshot); keep the proposal if no other worker holds or proposes it, else propose
    again. Two workers can never keep the same rank: the later of their two reads sees the other's
    proposal. Alone, a worker keeps the lowest free rank at once; joining together, they retry a few times.
    """
    import random
    import time

    proposal: int | None = None
    stuck = 0
    for _ in range(200):
        attrs = storage.get_study_user_attrs(study_id)
        mine = attrs.get(key)
        if isinstance(mine, dict) and "rank" in mine:
            return int(mine["rank"])
        others = {k: v for k, v in attrs.items() if k.startswith(_WORKER) and k != key and isinstance(v, dict)}
        held = {int(v["rank"]) for v in others.values() if "rank" in v}
        proposers = {k: int(v["proposal"]) for k, v in others.items() if "rank" not in v and v.get("proposal") is not None}
        proposed = set(proposers.values())
        if proposal is not None and isinstance(mine, dict) and mine.get("proposal") == proposal and proposal not in held | proposed:
            storage.set_study_user_attr(study_id, key, {**entry(proposal), "rank": proposal})
            return proposal
        # Workers choosing together take the free ranks in the order of their keys: with the same view, each
        # its own. Where another proposes the same rank (another view, or a worker that died choosing), the
        # smaller key keeps it and the other takes the lowest rank nobody holds or proposes; so does one
        # whose contender has not moved in three rounds.
        choosing = sorted([k for k, v in others.items() if "rank" not in v] + [key])
        free = [r for r in range(len(held) + len(choosing)) if r not in held]
        pick = free[min(choosing.index(key), len(free) - 1)]
        stuck = stuck + 1 if pick == proposal else 0  # a contender that never moves off it died choosing
        proposal = pick
        if any(r == proposal and (k < key or stuck >= 3) for k, r in proposers.items()):
            proposal = next(r for r in range(len(held) + len(proposed) + 1) if r not in held | proposed)
        storage.set_study_user_attr(study_id, key, {"proposal": proposal})
        time.sleep(random.uniform(0.0, 0.02))
    raise StudyError(f"{key}: found no free worker rank after 200 tries; start the worker again")
