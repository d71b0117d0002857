"""The commands that look: report, ui, status, doctor, trials and export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vae_tune import render
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
    project_of,
    ref_of,
    run,
)
from vae_tune.errors import VaeTuneError


@app.command()
def report(
    dataset: DatasetOpt = DEFAULT_DATASET,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Write reports/DATASET.md: studies, pruning funnel, champions, baselines, references."""
    from vae_tune import runner

    options = locals()

    def go() -> int:
        project = project_of(options)
        render.console.print(f"wrote {project.shown(runner.report(dataset, project))}")
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
    from vae_tune.ops.ui import serve

    given = locals()
    ports = {"dashboard_port": port, "mlflow_port": mlflow_port}
    options = {k: v for k, v in given.items() if k not in ports}
    options |= {k: v for k, v in ports.items() if v is not None}  # else the environment's

    def go() -> int:
        serve(project_of(options), open, log=render.console.print)
        return 0

    run(go)


@app.command()
def status(storage: StorageOpt = None, tracking_uri: TrackingOpt = None) -> None:
    """Every study in the storage: trials by state, best value, running trials."""
    from vae_tune import runner
    from vae_tune.analysis.tables import STATES

    options = locals()

    def go() -> int:
        render.status(runner.status(project_of(options)), STATES)
        return 0

    run(go)


@app.command()
def doctor(
    fix: Annotated[bool, typer.Option(help="Repair what can be repaired safely.")] = False,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Check the stores: schemas, zombie trials, runs left RUNNING, orphaned artifacts."""
    from vae_tune.ops.doctor import diagnose

    options = locals()

    def go() -> int:
        findings = diagnose(*project_of(options).open_stores(), fix=fix, log=render.console.print)
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
    from vae_tune import runner
    from vae_tune.analysis import tables

    options = locals()

    def go() -> int:
        ref = ref_of(options)
        found, frame = runner.trials_table(ref, project_of(options))
        best_first = sort == "value" and found.directions[0].name == "MAXIMIZE"
        chosen = tables.select(frame, state and state.value, sort, best_first, limit)
        render.trials(ref.name, chosen, len(frame))
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
    from vae_tune import runner

    options = locals()

    def go() -> int:
        ref = ref_of(options)
        _, frame = runner.trials_table(ref, project_of(options))
        path = out or Path(f"{ref.name}.{format.value}")
        if path.is_dir() or not path.parent.is_dir():
            raise VaeTuneError(f"--out {path}: give a file in an existing folder")
        if format == ExportFormat.csv:
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        render.console.print(f"wrote {len(frame)} trials x {len(frame.columns)} columns to {path}")
        return 0

    run(go)


@app.command()
def datasets() -> None:
    """The datasets --dataset takes, and how each is trained by default."""
    from vae_tune.datasets import BUILT_IN

    def go() -> int:
        rows = [
            (s.name, str(len(s.classes)), "flip_shift" if s.mirror else "shift", s.about)
            for s in BUILT_IN.values()
        ]
        rows += [
            (
                "folder:PATH",
                "its class folders",
                "shift",
                "PNG or JPEG images, one folder a class (train/ and test/, or a held-out share)",
            ),
            (
                "npz:PATH",
                "its labels",
                "shift",
                "arrays x_train, y_train [, x_test, y_test, classes]",
            ),
        ]
        render.table(
            "datasets (read from --data-dir or $VAE_TUNE_DATA; train.augment: auto picks)",
            ("dataset", "classes", "augment auto", "about"),
            rows,
        )
        return 0

    run(go)
