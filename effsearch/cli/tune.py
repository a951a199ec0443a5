"""`effsearch tune`: run or resume a study and print its front."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from effsearch.cli.app import StorageOpt, app, err, is_debug, log, out, print_failures

DEFAULT_TRIALS = 40


@app.command()
def tune(
    file: Annotated[Path, typer.Argument(help="Your model file; it calls effsearch.register(...).")],
    trials: Annotated[int, typer.Option("--trials", min=1, help="The study's total number of training runs.")] = DEFAULT_TRIALS,
    timeout: Annotated[float | None, typer.Option("--timeout", min=0, help="Start no new run after this many seconds.")] = None,
    study: Annotated[str | None, typer.Option("--study", help="Study name (default: the registered name).")] = None,
    storage: StorageOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampler and of training.")] = 0,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Override the registered epochs.")] = None,
    space: Annotated[Path | None, typer.Option("--space", help="TOML file overriding search dimensions.")] = None,
    objectives: Annotated[str | None, typer.Option("--objectives", help="Comma-separated objective keys.")] = None,
    max_world_size: Annotated[int | None, typer.Option("--max-world-size", min=1, help="Cap on DDP ranks.")] = None,
    energy_meter: Annotated[str | None, typer.Option("--energy-meter", help="Force an energy meter (see `effsearch plugins`).")] = None,
    trial_timeout: Annotated[float | None, typer.Option("--trial-timeout", min=1, help="Fail a training run after this many seconds.")] = None,
    latency_threads: Annotated[int, typer.Option("--latency-threads", min=1, help="onnxruntime threads when timing.")] = 1,
    latency_batch: Annotated[int, typer.Option("--latency-batch", min=1, help="Samples per timed call: latency_ms is one call at this batch, throughput_sps samples per second.")] = 1,
    latency_seq_len: Annotated[int | None, typer.Option("--latency-seq-len", min=1, help="Time token inputs at this sequence length (default: the length the validation set is padded to).")] = None,
    max_latency_ms: Annotated[float | None, typer.Option("--max-latency-ms", min=0, help="Constraint: p50 latency at most this; configurations that cannot meet it, measured untrained, are screened out before training.")] = None,
    max_metric_drop: Annotated[float | None, typer.Option("--max-metric-drop", help="Constraint: metric at most this worse than the baseline (metric units).")] = None,
    max_size_mb: Annotated[float | None, typer.Option("--max-size-mb", min=0, help="Constraint: ONNX file at most this many MB; configurations that cannot meet it, measured untrained, are screened out before training.")] = None,
    artifacts: Annotated[Path | None, typer.Option("--artifacts", help="Folder for trial artifacts, reachable by every worker (default: studies/).")] = None,
    heartbeat_interval: Annotated[int, typer.Option("--heartbeat-interval", min=1, help="Seconds between a running trial's heartbeats.")] = 10,
    heartbeat_grace: Annotated[int, typer.Option("--heartbeat-grace", min=1, help="Seconds without a heartbeat before a trial's worker counts as lost.")] = 30,
    early_stop: Annotated[bool, typer.Option("--early-stop/--no-early-stop", help="Stop a run once every point it could reach is dominated by a completed run's at the same epoch.")] = True,
) -> None:
    """Run (or resume) a study on FILE and print its Pareto front."""
    from effsearch.constraints import Constraints
    from effsearch.errors import StudyError
    from effsearch.inputs import padded_length
    from effsearch.objectives import parse_objectives
    from effsearch.results.front import front_rows, knee, study_info
    from effsearch.report.table import front_table
    from effsearch.space import load_space
    from effsearch.storage import redact, resolve_url
    from effsearch.study import TuneSettings, check_folders, tune as run_study
    from effsearch.train.pool import hardware_world_sizes
    from effsearch.userfile import load_user_file, probe

    uf = load_user_file(file)
    info, datasets = probe(uf)
    device, hw = hardware_world_sizes()
    cap = hw
    if max_world_size is not None:
        if max_world_size > hw:
            log.warning("--max-world-size %d is above what this machine offers (%d %s); using %d", max_world_size, hw, "GPUs" if device == "cuda" else "usable cores", hw)
        cap = min(hw, max_world_size)
    search = load_space(space, cap, trained=uf.registration.trained, device=device).clamp_world_size(cap)
    if latency_batch > info.n_val:
        raise StudyError(
            f"--latency-batch {latency_batch} exceeds the {info.n_val} samples of {uf.path.name}'s validation set, "
            f"which the timed batch is taken from; pass --latency-batch {info.n_val} or less"
        )
    if latency_seq_len is not None:
        padded = padded_length(info.inputs)
        if padded is None:
            raise StudyError(f"--latency-seq-len {latency_seq_len}: {uf.path.name}'s model takes no token input; drop the option")
        if latency_seq_len > padded:
            raise StudyError(
                f"--latency-seq-len {latency_seq_len} exceeds the {padded} positions {uf.path.name}'s validation set is padded to; "
                f"pass --latency-seq-len {padded} or less"
            )
    keys, directions = parse_objectives(objectives, uf.metric_key, uf.registration.metric_direction)
    url = resolve_url(storage)
    settings = TuneSettings(
        study_name=study or uf.name,
        storage_url=url,
        trials=trials,
        space=search,
        objectives=keys,
        directions=directions,
        epochs=epochs or uf.registration.epochs,
        seed=seed,
        timeout_s=timeout,
        trial_timeout_s=trial_timeout,
        energy_meter=energy_meter,
        latency_threads=latency_threads,
        latency_batch=latency_batch,
        latency_seq_len=latency_seq_len,
        constraints=Constraints(max_latency_ms, max_metric_drop, max_size_mb),
        artifacts=artifacts.resolve() if artifacts else None,
        heartbeat_interval_s=heartbeat_interval,
        heartbeat_grace_s=heartbeat_grace,
        early_stop=early_stop,
    )
    check_folders(settings)
    err.print(f"study [bold]{settings.study_name}[/] in {redact(url)}: {trials} training runs, objectives {', '.join(keys)}")
    with Progress(
        TextColumn("[bold]run[/] {task.completed:.0f}/{task.total:.0f}"),
        BarColumn(),
        TextColumn("{task.fields[stage]}"),
        TextColumn("front {task.fields[front]}"),
        TextColumn("screened out {task.fields[screened]}"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),  # estimated from the runs finished so far; blank until there are some
        console=err,
        transient=False,
        disable=not err.is_terminal and not is_debug(),
    ) as progress:
        task = progress.add_task("tune", total=trials, stage="starting", front=0, screened=0)

        def on_stage(run: int, stage: str, front: int, screened: int) -> None:
            fields = {"stage": stage, "screened": screened}
            if front >= 0:
                fields["front"] = front
            progress.update(task, completed=min(run, trials), **fields)

        tuner, summary = run_study(settings, uf=uf, probe=info, datasets=datasets, on_stage=on_stage)
        progress.update(task, completed=min(summary.runs_done, trials), stage="done", front=tuner.front_size())
    rows = front_rows(summary.study)
    k = knee(summary.study, rows)
    out.print(front_table(study_info(summary.study), rows, k.trial if k else None))
    print_failures(summary.study)
    if tuner.screened:
        err.print(f"{tuner.screened} configuration(s) screened out before training by the limits", markup=False, highlight=False)
    if tuner.stopped:
        err.print(f"{tuner.stopped} run(s) stopped early: dominated at an epoch by a completed run (--no-early-stop trains every run in full)",
                  markup=False, highlight=False)
    if summary.runs_here and summary.completed_here == 0 and not rows:
        raise typer.Exit(1)
