"""The command line: arguments, paths, device, seeds and printing. No ML logic lives here."""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vae_tune.errors import VaeTuneError

if TYPE_CHECKING:
    from vae_tune.pipeline import PipelineResult
    from vae_tune.promote import Promotion
    from vae_tune.runner import StudyResult

app = typer.Typer(
    help="Hyperparameter-optimization studies for autoencoders and VAEs, tracked in MLflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# No markup: log lines carry user text (reasons, shapes like [128, 1, 28, 28]) to print as is.
console = Console(highlight=False, soft_wrap=True, markup=False)  # commands stay copyable
errors = Console(stderr=True, highlight=False, soft_wrap=True)


@app.callback()
def _group() -> None:
    """Hyperparameter-optimization studies for autoencoders and VAEs, tracked in MLflow."""


class Stage(str, Enum):
    ae = "ae"
    vae = "vae"
    mlp = "mlp"
    cnn = "cnn"


class EncoderStage(str, Enum):
    ae = "ae"
    vae = "vae"


class Dataset(str, Enum):
    fashion_mnist = "fashion-mnist"
    mnist = "mnist"


# Options shared by several commands: one definition, one help text.
StorageOption = Annotated[
    str | None,
    typer.Option(help="Optuna storage: journal file or URL (default: studies/optuna.journal)."),
]
TrackingOption = Annotated[
    str | None, typer.Option(help="MLflow tracking URI (default: sqlite:///mlflow.db).")
]
DatasetOption = Annotated[Dataset, typer.Option(help="Dataset.")]
DataDirOption = Annotated[
    Path | None, typer.Option(help="Data folder (default: $VAE_TUNE_DATA or ./data).")
]
DeviceOption = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
SeedOption = Annotated[
    int | None,
    typer.Option(
        help="Seed of the split, the sampler and the trials (default: the space's "
        "study.sampler.seed, else 0)."
    ),
]


@app.command()
def study(
    stage: Annotated[
        Stage,
        typer.Argument(
            help="What to search: ae, vae, mlp (the head on an encoder) or cnn (pixels)."
        ),
    ],
    n_trials: Annotated[
        int | None,
        typer.Option(
            "--n-trials",
            "-n",
            min=1,
            help="Finished trials wanted in the study (default: the space's study.n_trials, "
            "else 12).",
        ),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=1, help="Stop starting new trials after this many seconds.")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Epochs per trial (overrides train.epochs).")
    ] = None,
    study_name: Annotated[
        str | None, typer.Option(help="Study name (default: STAGE-DATASET).")
    ] = None,
    storage: StorageOption = None,
    tracking_uri: TrackingOption = None,
    space: Annotated[
        Path | None, typer.Option(help="Search-space YAML (default: search_spaces/STAGE.yaml).")
    ] = None,
    dataset: DatasetOption = Dataset.fashion_mnist,
    data_dir: DataDirOption = None,
    train_size: Annotated[
        int | None, typer.Option(min=10, help="Train on a stratified subset of this size.")
    ] = None,
    val_size: Annotated[int, typer.Option(min=1, help="Validation images.")] = 12_000,
    seed: SeedOption = None,
    device: DeviceOption = "auto",
    sampler: Annotated[
        str | None, typer.Option(help="Sampler name, overriding the space file.")
    ] = None,
    pruner: Annotated[
        str | None, typer.Option(help="Pruner name, overriding the space file.")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Resume even though the space or settings changed.")
    ] = False,
    encoder: Annotated[
        EncoderStage, typer.Option(help="mlp: the stage whose encoder the head is trained on.")
    ] = EncoderStage.ae,
    encoder_study: Annotated[
        str | None, typer.Option(help="mlp: the encoder's study (default: ENCODER-DATASET).")
    ] = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes on this machine sharing the study.")
    ] = 1,
    patience: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Stop when the best value has not improved in this many finished trials.",
        ),
    ] = None,
) -> None:
    """Run (or resume) an Optuna study with pruning; every trial is an MLflow run."""
    from vae_tune import runner  # heavy imports (torch, optuna, mlflow) only when needed
    from vae_tune.progress import LiveProgress

    request = runner.StudyRequest(
        stage=stage.value,
        n_trials=n_trials,
        timeout=timeout,
        epochs=epochs,
        study_name=study_name,
        storage=storage,
        tracking_uri=tracking_uri,
        space=space,
        dataset=dataset.value,
        data_dir=data_dir,
        train_size=train_size,
        val_size=val_size,
        seed=seed,
        device=device,
        sampler=sampler,
        pruner=pruner,
        force=force,
        encoder=encoder.value,
        encoder_study=encoder_study,
        workers=workers,
        patience=patience,
    )
    # A live bar per trial in a terminal; plain lines in logs, pipes and CI.
    progress = LiveProgress(console) if console.is_terminal else None
    _run(lambda: _print_summary(runner.run(request, log=console.print, progress=progress)))


@app.command()
def pipeline(
    encoder: Annotated[
        EncoderStage, typer.Option(help="The encoder the classifier is built on.")
    ] = EncoderStage.ae,
    budget: Annotated[
        str, typer.Option(help="Wall time for all four stages: 30m, 90s, 1.5h, 1h30m.")
    ] = "30m",
    dataset: DatasetOption = Dataset.fashion_mnist,
    data_dir: DataDirOption = None,
    storage: StorageOption = None,
    tracking_uri: TrackingOption = None,
    seed: SeedOption = None,
    device: DeviceOption = "auto",
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes on this machine sharing each study.")
    ] = 1,
    train_size: Annotated[
        int | None, typer.Option(min=10, help="Train on a stratified subset of this size.")
    ] = None,
    val_size: Annotated[int, typer.Option(min=1, help="Validation images.")] = 12_000,
) -> None:
    """Encoder study, its promotion, head study, its promotion and the report, in a budget.

    Rerun it to resume: ended stages are skipped, an interrupted study is topped up."""
    from vae_tune.pipeline import PipelineRequest, parse_budget, run_pipeline

    def go() -> None:
        request = PipelineRequest(
            encoder=encoder.value,
            budget_s=parse_budget(budget),
            dataset=dataset.value,
            data_dir=data_dir,
            storage=storage,
            tracking_uri=tracking_uri,
            seed=seed,
            device=device,
            workers=workers,
            train_size=train_size,
            val_size=val_size,
        )
        _print_pipeline(run_pipeline(request, log=console.print))

    _run(go)


@app.command()
def promote(
    stage: Annotated[Stage, typer.Argument(help="Which study to promote: ae, vae, mlp or cnn.")],
    study_name: Annotated[
        str | None, typer.Option(help="Study name (default: as `vae-tune study` names it).")
    ] = None,
    encoder: Annotated[
        EncoderStage, typer.Option(help="mlp: the encoder stage (for the default study name).")
    ] = EncoderStage.ae,
    top_k: Annotated[int, typer.Option(min=1, help="Complete trials considered.")] = 3,
    seeds: Annotated[
        int, typer.Option(min=0, help="Extra training runs per candidate, other seeds.")
    ] = 0,
    force: Annotated[
        bool, typer.Option(help="Evaluate on the test split again an already promoted trial.")
    ] = False,
    storage: StorageOption = None,
    tracking_uri: TrackingOption = None,
    dataset: DatasetOption = Dataset.fashion_mnist,
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
) -> None:
    """Choose the champion on validation data, retrain it, evaluate it once on test, register it."""
    from vae_tune import runner

    request = runner.PromoteRequest(
        stage=stage.value,
        study_name=study_name,
        storage=storage,
        tracking_uri=tracking_uri,
        dataset=dataset.value,
        data_dir=data_dir,
        device=device,
        top_k=top_k,
        seeds=seeds,
        force=force,
        encoder=encoder.value,
    )
    _run(lambda: _print_promotion(runner.promote(request, log=console.print)))


@app.command()
def report(
    dataset: DatasetOption = Dataset.fashion_mnist,
    storage: StorageOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Write reports/DATASET.md: studies, pruning funnel, champions, baselines, references."""
    from vae_tune import runner

    _run(lambda: console.print(f"wrote {runner.report(dataset.value, storage, tracking_uri)}"))


@app.command()
def ui(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65534, help="optuna-dashboard's port; MLflow takes the next."),
    ] = None,
    storage: StorageOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Serve optuna-dashboard and the MLflow UI on this project's stores until Ctrl-C."""
    from vae_tune import runner

    _run(lambda: runner.serve_uis(storage, tracking_uri, host, port, log=console.print))


class TrialState(str, Enum):
    complete = "complete"
    pruned = "pruned"
    fail = "fail"
    running = "running"


class ExportFormat(str, Enum):
    csv = "csv"
    parquet = "parquet"


StudyNameOption = Annotated[
    str | None, typer.Option(help="Study name (default: as `vae-tune study` names it).")
]
EncoderOption = Annotated[
    EncoderStage, typer.Option(help="mlp: the encoder stage (for the default study name).")
]


@app.command()
def status(storage: StorageOption = None, tracking_uri: TrackingOption = None) -> None:
    """Every study in the storage: trials by state, best value, running trials."""
    from vae_tune import runner, tables

    def show() -> None:
        opened, _ = runner.open_stores(storage, tracking_uri, Path.cwd())
        table = Table(title="studies")
        columns = ("study", "stage", "dataset", "metric", *tables.STATES, "best", "running_trials")
        for column in columns:
            table.add_column(column.replace("_", " "), overflow="fold")
        for row in tables.study_rows(opened):
            table.add_row(*(_fmt(row[c]) if row[c] is not None else "-" for c in columns))
        console.print(table)

    _run(show)


@app.command()
def doctor(
    fix: Annotated[bool, typer.Option(help="Repair what can be repaired safely.")] = False,
    storage: StorageOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Check the stores: schemas, zombie trials, runs left RUNNING, orphaned artifacts."""
    from vae_tune import runner
    from vae_tune.doctor import diagnose

    def check() -> None:
        opened, tracker = runner.open_stores(storage, tracking_uri, Path.cwd())
        findings = diagnose(opened, tracker, fix=fix)
        table = Table(title="vae-tune doctor")
        for column in ("check", "state", "detail"):
            table.add_column(column, overflow="fold")
        for finding in findings:
            table.add_row(finding.check, finding.state, finding.detail)
        console.print(table)
        problems = sum(f.state == "problem" for f in findings)
        if problems:
            console.print(f"{problems} problem(s): `vae-tune doctor --fix` repairs them")
            raise typer.Exit(1)

    _run(check)


@app.command()
def trials(
    stage: Annotated[Stage, typer.Argument(help="ae, vae, mlp or cnn.")],
    study_name: StudyNameOption = None,
    encoder: EncoderOption = EncoderStage.ae,
    dataset: DatasetOption = Dataset.fashion_mnist,
    state: Annotated[TrialState | None, typer.Option(help="Only trials in this state.")] = None,
    sort: Annotated[str, typer.Option(help="Column to sort by (value: best first).")] = "value",
    limit: Annotated[int | None, typer.Option(min=1, help="Show at most this many.")] = None,
    storage: StorageOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """A study's trials as a table: state, value, epochs, params, MLflow run."""
    from vae_tune import runner, tables

    def show() -> None:
        name = study_name or _default_name(stage, dataset, encoder)
        study, frame = runner.trials_table(name, storage, tracking_uri)
        maximize = study.direction.name == "MAXIMIZE"
        chosen = tables.select(frame, state and state.value, sort, sort == "value" and maximize,
                               limit)  # fmt: skip
        columns = [c for c in ("number", "state", "value", "best_epoch", "pruned_at_epoch",
                               "duration_s") if c in chosen]  # fmt: skip
        columns += [c for c in chosen if c.startswith("params_")] + ["mlflow_run_id"]
        table = Table(title=f"{name}: {len(chosen)} of {len(frame)} trials")
        for column in columns:  # `params_train.lr` -> `lr`: narrow enough for a terminal
            table.add_column(column.rpartition(".")[2].removeprefix("params_"), overflow="fold")
        for _, row in chosen.iterrows():
            table.add_row(*(_cell(c, row.get(c)) for c in columns))
        console.print(table)

    _run(show)


@app.command()
def export(
    stage: Annotated[Stage, typer.Argument(help="ae, vae, mlp or cnn.")],
    format: Annotated[ExportFormat, typer.Option(help="File format.")] = ExportFormat.csv,
    out: Annotated[Path | None, typer.Option(help="File (default: STUDY.FORMAT here).")] = None,
    study_name: StudyNameOption = None,
    encoder: EncoderOption = EncoderStage.ae,
    dataset: DatasetOption = Dataset.fashion_mnist,
    storage: StorageOption = None,
    tracking_uri: TrackingOption = None,
) -> None:
    """Optuna trials joined with their MLflow runs, as one CSV or Parquet table."""
    from vae_tune import runner

    def write() -> None:
        name = study_name or _default_name(stage, dataset, encoder)
        _, frame = runner.trials_table(name, storage, tracking_uri)
        path = out or Path(f"{name}.{format.value}")
        if format == ExportFormat.csv:
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        console.print(f"wrote {len(frame)} trials x {len(frame.columns)} columns to {path}")

    _run(write)


@app.command()
def curve(
    stage: Annotated[Stage, typer.Argument(help="The promoted study: ae, vae, mlp or cnn.")],
    sizes: Annotated[
        str, typer.Option(help="Training-set sizes, comma-separated.")
    ] = "20000,30000,40000,50000,60000",
    study_name: StudyNameOption = None,
    encoder: EncoderOption = EncoderStage.ae,
    dataset: DatasetOption = Dataset.fashion_mnist,
    data_dir: DataDirOption = None,
    storage: StorageOption = None,
    tracking_uri: TrackingOption = None,
    device: DeviceOption = "auto",
) -> None:
    """Learning curve: the promoted config retrained on growing subsets, each tested once."""
    from vae_tune import runner

    try:
        parsed = tuple(int(size) for size in sizes.split(","))
    except ValueError:
        raise typer.BadParameter(
            f"not comma-separated integers: {sizes!r}", param_hint="--sizes"
        ) from None
    request = runner.CurveRequest(
        stage=stage.value,
        sizes=parsed,
        study_name=study_name,
        storage=storage,
        tracking_uri=tracking_uri,
        dataset=dataset.value,
        data_dir=data_dir,
        device=device,
        encoder=encoder.value,
    )

    def show() -> None:
        result = runner.curve(request, log=console.print)
        table = Table(title=f"learning curve of {result.study_name}, trial {result.trial} "
                            f"({result.evaluation}); test split read once per size")  # fmt: skip
        for column in ("training images", "latent dim", "train error", "test error"):
            table.add_column(column, justify="right")
        for row in result.rows:
            table.add_row(str(row["size"]), str(row["latent_dim"] or "-"),
                          f"{row['train_error']:.4f}", f"{row['test_error']:.4f}")  # fmt: skip
        console.print(table)
        console.print(f"MLflow run {result.run_id}")

    _run(show)


def _default_name(stage: Stage, dataset: Dataset, encoder: EncoderStage) -> str:
    from vae_tune.runner import StudyRequest

    return StudyRequest(
        stage.value, dataset=dataset.value, encoder=encoder.value
    ).default_study_name


def _cell(column: str, value: object) -> str:
    """A short cell: 4 significant digits, run ids cut to 8 characters (as MLflow shows them)."""
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return "-"
    if column == "mlflow_run_id":
        return str(value)[:8]
    if column == "state":
        return str(value).lower()
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _print_promotion(result: Promotion) -> None:
    candidates = Table(title=f"candidates of {result.study_name} (validation {result.metric})")
    for column in ("trial", "mean", "std", "runs", "params"):
        candidates.add_column(column)
    for c in result.candidates:
        params = " ".join(f"{k}={_fmt(v)}" for k, v in c.trial.params.items())
        candidates.add_row(str(c.trial.number), _fmt(c.mean), _fmt(c.spread), str(len(c.values)),
                           params)  # fmt: skip
    console.print(candidates)
    test = Table(
        title=f"champion: trial {result.champion.trial.number}, test split", show_header=False
    )
    for name, value in result.test.items():
        test.add_row(name, _fmt(value))
    console.print(test)
    if result.per_class_f1:
        per_class = Table(title="test F1 per class")
        per_class.add_column("class")
        per_class.add_column("F1")
        for name, value in result.per_class_f1.items():
            per_class.add_row(name, f"{value:.4f}")
        console.print(per_class)
    state = "already promoted, test split not read again" if result.reused else "registered"
    console.print(f"{result.model_name} version {result.model_version} @champion ({state}); "
                  f"MLflow run {result.run_id}")  # fmt: skip


def _print_pipeline(result: PipelineResult) -> None:
    table = Table(title=f"pipeline: {result.wall_s / 60:.1f} min of a {result.budget_s / 60:.1f}"
                  " min budget")  # fmt: skip
    for column in ("stage", "study", "champion", "validation", "test", "wall"):
        table.add_column(column, overflow="fold")
    for row in result.rows:
        validation = "-" if row.validation is None else f"{row.metric} {row.validation:.5g}"
        test = ", ".join(f"{k} {v:.4g}" for k, v in row.test.items()
                         if not k.startswith("test_accuracy_"))  # fmt: skip
        wall = "skipped (done before)" if row.skipped else f"{row.wall_s:.0f} s"
        champion = "-" if row.champion is None else f"trial {row.champion}"
        table.add_row(row.stage, row.study, champion, validation, test or "-", wall)
    for name, value in result.baselines.items():
        table.add_row("baseline", name.removeprefix("test_accuracy_"), "-", "-",
                      f"test_accuracy {value:.4g}", "-")  # fmt: skip
    console.print(table)
    if result.report is not None:
        console.print(f"report: {result.report}")


def _fmt(value: object) -> str:
    return f"{value:.5g}" if isinstance(value, float) else str(value)


_STATE_WORDS = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}


def _print_summary(result: StudyResult) -> None:
    summary = result.summary
    table = Table(title=f"study {summary.study_name}", show_header=False)
    for state, n in summary.counts.items():
        table.add_row(_STATE_WORDS.get(state, state.lower()), str(n))
    if summary.best_value is not None:
        table.add_row("best value", f"{summary.best_value:.6g} (trial {summary.best_trial})")
        for name, value in summary.best_params.items():
            table.add_row(f"  {name}", f"{value:.4g}" if isinstance(value, float) else str(value))
        table.add_row("best MLflow run", str(summary.best_run_id))
    if summary.stop_reason:
        table.add_row("stopped early", summary.stop_reason)
    console.print(table)
    console.print("Watch and compare:")
    console.print(f"  {result.dashboard_command}")
    console.print(f"  {result.mlflow_command}")
    if summary.counts["COMPLETE"] == 0:
        raise VaeTuneError("no trial completed; see the failure reasons above")


def _run(action) -> None:
    """Run a command: user errors as one line and exit 2, Ctrl-C or SIGTERM as exit 130."""
    for name in ("optuna", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Models are pickled on purpose (heads need the encoder's methods): no warning each time.
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # bars garble logs
    # A kill (SIGTERM) takes the same graceful path as Ctrl-C: runs closed, study resumable.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        action()
    except VaeTuneError as exc:
        errors.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        errors.print("interrupted: open runs were closed; run the same command to resume.")
        raise typer.Exit(130) from None
    except Exception as exc:
        disk = _disk_error(exc)
        if disk is None:
            raise  # a bug: the traceback is what a report needs
        where = f" ({disk.filename})" if disk.filename else ""
        errors.print(f"[bold red]error:[/] {escape(disk.strerror or str(disk))}{escape(where)}. "
                     "Everything recorded before is intact: fix this and run the same command "
                     "to resume (`vae-tune doctor` checks the stores).")  # fmt: skip
        raise typer.Exit(1) from None


DISK_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


def _disk_error(exc: BaseException | None) -> OSError | None:
    """The full, read-only or forbidden disk behind an error, however deep the libraries
    wrapped it (Optuna raises its own error while failing a trial it cannot write)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def main() -> None:
    app(prog_name="vae-tune")


if __name__ == "__main__":
    sys.exit(main())
