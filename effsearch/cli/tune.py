"""`effsearch tune`: run or resume a study and print its front."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from effsearch.cli.app import StorageOpt, app, err, is_debug, out, print_failures
from effsearch.cli.report import WideOpt

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
    wide: WideOpt = False,
) -> None:
    """Run (or resume) a study on FILE and print its Pareto front."""
    from effsearch.api import StageProgress, prepare
    from effsearch.storage import redact

    options = dict(
        trials=trials, study=study, storage=storage, seed=seed, epochs=epochs, space=space, objectives=objectives,
        max_world_size=max_world_size, energy_meter=energy_meter, trial_timeout=trial_timeout, latency_threads=latency_threads,
        latency_batch=latency_batch, latency_seq_len=latency_seq_len, max_latency_ms=max_latency_ms,
        max_metric_drop=max_metric_drop, max_size_mb=max_size_mb, artifacts=artifacts, heartbeat_interval=heartbeat_interval,
        heartbeat_grace=heartbeat_grace, early_stop=early_stop, timeout=timeout,
    )
    job = prepare(file, **options)
    s = job.settings
    err.print(f"study [bold]{s.study_name}[/] in {redact(s.storage_url)}: {trials} training runs, objectives {', '.join(s.objectives)}")
    # Shown on a terminal (or with --debug), silent in a pipe.
    with StageProgress(trials, console=err, disable=not err.is_terminal and not is_debug()) as progress:
        result = job.run(on_stage=progress, verbose=is_debug())
        progress.done(result)
    ran = result.ran
    assert ran is not None  # set by every tune
    print_front(result, wide)
    if ran.screened:
        err.print(f"{ran.screened} configuration(s) screened out before training by the limits", markup=False, highlight=False)
    if ran.stopped:
        err.print(f"{ran.stopped} run(s) stopped early: dominated at an epoch by a completed run (--no-early-stop trains every run in full)",
                  markup=False, highlight=False)
    if ran.here and ran.completed == 0 and not result.rows:
        raise typer.Exit(1)


def print_front(result, wide: bool) -> None:
    """The study's front table, then its failures."""
    from effsearch.report.table import front_table
    from effsearch.results.front import study_info

    out.print(front_table(study_info(result.study), list(result.rows), result.knee["trial"] if result.knee else None, wide=wide))
    print_failures(result.study)

