"""A registration made from Python, as bytes for the rank processes: cloudpickle serves functions defined in a notebook."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from effsearch.errors import UserFileError
from effsearch.registration import Registration

__all__ = ["dumps", "loads"]


def _picklable(value: Any) -> bool:
    import cloudpickle

    try:
        cloudpickle.dumps(value)
        return True
    except Exception:
        return False


def dumps(registration: Registration) -> bytes:
    """The registration's bytes; one that cannot be pickled is refused in one line naming its part and the fix."""
    import cloudpickle

    try:
        return cloudpickle.dumps(registration)
    except Exception as exc:
        bad = next((f.name for f in fields(registration) if not _picklable(getattr(registration, f.name))), None)
        what = "the registration"
        if bad is not None:
            value = getattr(registration, bad)
            what = f"Registration({bad}={getattr(value, '__qualname__', type(value).__name__)})"
        raise UserFileError(
            f"{what} cannot be sent to the rank processes ({type(exc).__name__}: {exc}); define it at module level and "
            "keep locks, open files and connections out of what it refers to (make them inside the factory)"
        ) from exc


def loads(pickled: bytes) -> Registration:
    """The registration `dumps` gave, rebuilt (in a rank process)."""
    import cloudpickle

    try:
        return cloudpickle.loads(pickled)
    except Exception as exc:
        raise UserFileError(
            f"the registration cannot be rebuilt in a rank process ({type(exc).__name__}: {exc}); "
            "define its functions in the notebook, or in a module every process can import"
        ) from exc
