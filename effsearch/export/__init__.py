"""Ship one trial: copy its ONNX file out, verify it on the validation set, and write its model card.

Reads storage; re-imports the user file only to verify (the model is never rebuilt or retrained). The
model and its two cards are written under temporary names and moved in place only once all three exist.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from effsearch.errors import ExportError
from effsearch.export.card import card_paths, model_card
from effsearch.export.card_md import card_markdown
from effsearch.export.verify import FP32_TOLERANCE, TOLERANCE, source_artifact, tolerance, verify_copy
from effsearch.record import StudyMeta
from effsearch.results.front import FrontRow, study_info

if TYPE_CHECKING:
    from effsearch.userfile import UserFile

__all__ = [
    "FP32_TOLERANCE",
    "TOLERANCE",
    "ExportResult",
    "tolerance",
    "card_paths",
    "source_artifact",
    "card_markdown",
    "export_trial",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """What was written, and how the verification came out."""

    path: Path
    card_json: Path
    card_md: Path
    trial: int
    metric_key: str
    recorded: float
    verified: float
    tolerance: float
    card: dict[str, Any]


def _targets(out: Path, force: bool) -> tuple[Path, Path]:
    """The two card paths beside `out`, once it is clear that nothing is overwritten unasked."""
    json_path, md_path = card_paths(out)
    if out.is_dir():
        raise ExportError(f"{out} is a directory; give the model file's path, e.g. -o {out / 'model.onnx'}")
    existing = [p for p in (out, json_path, md_path) if p.exists()]
    if existing and not force:
        listed = ", ".join(str(p) for p in existing)
        verb = "exists; pass --force to overwrite it" if len(existing) == 1 else "exist; pass --force to overwrite them"
        raise ExportError(f"{listed} {verb}")
    return json_path, md_path


def _user_file(meta: StudyMeta, name: str, user_file: str | Path | UserFile | None) -> Any:
    from effsearch.userfile import UserFile, load_user_file

    if isinstance(user_file, UserFile):  # loaded already, or registered from Python (no file to import)
        return user_file
    file = user_file or meta.user_file
    if not file:
        raise ExportError(f"study {name!r} records no user file; pass --file my_model.py to verify with")
    if not Path(file).expanduser().is_file():
        raise ExportError(f"the study's user file {file} is gone; pass --file PATH to the model file to verify with")
    return load_user_file(file)


def export_trial(
    study: optuna.Study,
    row: FrontRow,
    out: str | Path,
    url: str,
    *,
    force: bool = False,
    user_file: str | Path | UserFile | None = None,
) -> ExportResult:
    """Copy trial `row`'s ONNX file to `out` (taken literally; parents made), verify it, and write its cards.

    On a failed check nothing is left behind. user_file: overrides the user file recorded on the study.
    """
    out = Path(out).expanduser().absolute()
    json_path, md_path = _targets(out, force)
    src = source_artifact(study, row)
    info = study_info(study)
    uf = _user_file(info.meta, info.name, user_file)
    if uf.metric_key != info.metric_key:
        raise ExportError(
            f"{uf.path.name} registers the metric {uf.metric_key!r}, but the study measured {info.metric_key!r}; "
            "pass the study's file with --file"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = {p: p.parent / f".{p.name}.{os.getpid()}.partial" for p in (out, json_path, md_path)}
    try:
        shutil.copyfile(src, partial[out])
        check = verify_copy(partial[out], row, uf=uf, meta=info.meta, metric_key=info.metric_key)
        card = model_card(study, row, url=url, out=out, model=partial[out], check=check.to_dict(), user_file=uf.path)
        partial[json_path].write_text(json.dumps(card, indent=2, default=str) + "\n")
        partial[md_path].write_text(card_markdown(card))
        for final in (json_path, md_path, out):  # the model last: a model in place always has its cards
            os.replace(partial[final], final)
    finally:
        for tmp in partial.values():
            tmp.unlink(missing_ok=True)
    if check.user_file_changed:
        log.warning("%s changed since the study was created; the model verified with it all the same", uf.path.name)
    return ExportResult(out, json_path, md_path, row.trial, info.metric_key, check.recorded, check.value, check.tolerance, card)
