"""What effsearch writes on a trial (trial.py) and on a study (study.py, its own record in meta.py): one
record each, one writer, one reader. Every user-attribute key effsearch stores is spelled in this package
(trial.py, study.py, meta.py, given_up.py) and nowhere else; defaults are decided there once (a failed
trial without a reason lost its worker; a trial outside any run belongs to run 0; a study made before a
figure was recorded used StudyMeta's default)."""

from __future__ import annotations

from effsearch.record import meta as _meta
from effsearch.record import study as _study
from effsearch.record import trial as _trial
from effsearch.record.meta import *  # noqa: F403
from effsearch.record.study import *  # noqa: F403
from effsearch.record.trial import *  # noqa: F403

__all__ = [*_trial.__all__, *_study.__all__, *_meta.__all__]
