"""The commands that look: report, ui, status, doctor, trials and export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vae_tune import api
from vae_tune.cli import render
from vae_tune.cli.app import (
    DEFAULT_DATASET,
    DatasetOpt,
    EncoderName,
    EncoderOpt,
    ExportFormat,
    StageArg,
    StorageOpt,
    StudyNameOpt,
    TrackingOpt,
    TrialState,
    app,
    keywords,
    run,
)


@app.command()
def report(
    dataset: DatasetOpt = DEFAULT_DATASET,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Write reports/DATASET.md: studies, pruning funnel, champions, baselines, references."""
    options = keywords(locals())

    def go() -> int:
        render.console.print(f"wrote {render.shown(api.report(**options))}")
        return 0

    run(go)


@app.command()
def ui(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="optuna-dashboard's port, which trial runs link to "
            "(default: $VAE_TUNE_DASHBOARD_PORT or 8080).",
        ),
    ] = None,
    mlflow_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="The MLflow UI's port, which trial notes link to "
            "(default: $VAE_TUNE_MLFLOW_PORT or 5000).",
        ),
    ] = None,
    open: Annotated[bool, typer.Option("--open", help="Open both in the browser.")] = False,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Serve optuna-dashboard and the MLflow UI on this project's stores until Ctrl-C; print
    the URLs of each study's trials in both, and of its best trials side by side."""
    options = keywords(locals())

    def go() -> int:
        api.ui(**options, log=render.console.print)
        return 0

    run(go)


@app.command()
def status(storage: StorageOpt = None, tracking_uri: TrackingOpt = None) -> None:
    """Every study in the storage: trials by state, best value, running trials."""
    options = keywords(locals())

    def go() -> int:
        render.status(api.status(**options))
        return 0

    run(go)


@app.command()
def doctor(
    fix: Annotated[bool, typer.Option(help="Repair what can be repaired safely.")] = False,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Check the stores: schemas, zombie trials, runs left RUNNING, orphaned artifacts."""
    options = keywords(locals())

    def go() -> int:
        findings = api.doctor(**options, log=render.console.print)
        render.doctor(findings)
        problems = sum(f.state == "problem" for f in findings)
        if problems:
            render.console.print(f"{problems} problem(s): `vae-tune doctor --fix` repairs them")
        return 1 if problems else 0

    run(go)


@app.command()
def trials(
    stage: StageArg,
    study_name: StudyNameOpt = None,
    encoder: EncoderOpt = EncoderName.ae,
    dataset: DatasetOpt = DEFAULT_DATASET,
    state: Annotated[TrialState | None, typer.Option(help="Only trials in this state.")] = None,
    sort: Annotated[str, typer.Option(help="Column to sort by (value: best first).")] = "value",
    limit: Annotated[int | None, typer.Option(min=1, help="Show at most this many.")] = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """A study's trials as a table: state, value, epochs, params, MLflow run."""
    options = keywords(locals())

    def go() -> int:
        chosen = api.trials(**options)
        render.trials(chosen.attrs["study"], chosen, chosen.attrs["total"])
        return 0

    run(go)


@app.command()
def export(
    stage: StageArg,
    format: Annotated[ExportFormat, typer.Option(help="File format.")] = ExportFormat.csv,
    out: Annotated[Path | None, typer.Option(help="File (default: STUDY.FORMAT here).")] = None,
    study_name: StudyNameOpt = None,
    encoder: EncoderOpt = EncoderName.ae,
    dataset: DatasetOpt = DEFAULT_DATASET,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Optuna trials joined with their MLflow runs, as one CSV or Parquet table."""
    options = keywords(locals())

    def go() -> int:
        done = api.export(**options)
        render.console.print(f"wrote {done.rows} trials x {done.columns} columns to {done.path}")
        return 0

    run(go)


@app.command()
def datasets() -> None:
    """The datasets --dataset takes, and how each is trained by default."""

    def go() -> int:
        render.datasets(api.datasets())
        return 0

    run(go)
