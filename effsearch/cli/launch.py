"""`effsearch tune FILE --workers N --launcher NAME`: start the workers, show the study's progress, print its front."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from effsearch.cli.app import err, is_debug, print_front

__all__ = ["launch"]


def _last_line(log: Path | None) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log else []
    except OSError:
        return ""
    return f": {lines[-1].strip()}" if lines else ""


def launch(job: Any, file: Path, options: dict[str, Any], *, workers: int, launcher: str, pairs: Sequence[str], wide: bool) -> None:
    """Start `workers` workers of the study in `job` through `launcher`, wait for them and print the front.

    Exits 1 when no worker ended well; a worker that was lost is said in one line (it is not restarted:
    its run is queued again by the lease, and another worker takes it up).
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from effsearch.api import load
    from effsearch.launch import Preemption, StudyWatch, check_storage, exit_line, launcher_for, wait, worker_argv, world_cap
    from effsearch.storage import redact

    s = job.settings
    chosen = launcher_for(launcher, pairs)
    check_storage(s.storage_url, chosen)  # refused before anything is said or started
    share = chosen.share(workers)
    argv = worker_argv(file, options, s, share, debug=is_debug())
    gpus = f", {share.gpus} GPU(s)" if share.gpus else ""
    err.print(
        f"study {s.study_name} in {redact(s.storage_url)}: {s.trials} training runs by {workers} {launcher} workers, "
        f"each with {share.cpus} core(s){gpus}, runs of at most {world_cap(options.get('max_world_size'), share)} rank(s)",
        markup=False, highlight=False,
    )
    started = chosen.start(workers, argv, share)
    err.print("started " + ", ".join(w.name for w in started), markup=False, highlight=False)
    bar = Progress(
        TextColumn("[bold]run[/] {task.completed:.0f}/{task.total:.0f}"), BarColumn(), TextColumn("workers running {task.fields[running]}"),
        TimeElapsedColumn(), console=err, disable=not err.is_terminal and not is_debug(),
    )
    task = bar.add_task("launch", total=s.trials, running=workers)
    # SIGTERM to the launch stops its workers as Ctrl-C does (each queues its run again).
    with Preemption(), bar:
        ended = wait(started, StudyWatch(s.study_name, s.storage_url),
                     on_progress=lambda runs, running: bar.update(task, completed=min(runs, s.trials), running=running))
    for worker in started:
        code = ended.exit_codes[worker.name]
        if code != 0:
            err.print(exit_line(worker.name, code) + _last_line(worker.log), markup=False, highlight=False)
    try:
        result = load(s.study_name, s.storage_url)
    except Exception:  # no worker made the study
        raise typer.Exit(1)
    print_front(result, wide)
    if not ended.ok:
        raise typer.Exit(1)
