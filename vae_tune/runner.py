"""From a command-line request to a running study: resolves paths, stores, device and data.

Kept apart from `cli.py` so the CLI starts fast (torch, optuna and mlflow load only here) and so
tests can run the user's exact path in-process. The order is deliberate: the search space is
validated first, then the stores are opened, and only then is data loaded and training begun.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import torch
from optuna.storages import BaseStorage
from torch import nn

import vae_tune
from vae_tune import servers, tables
from vae_tune.baselines import logistic_baselines
from vae_tune.curve import Curve, learning_curve
from vae_tune.data import Splits, load_splits
from vae_tune.encoders import encoder_from_lineage, resolve_encoder
from vae_tune.errors import VaeTuneError
from vae_tune.options import CommandLine, RunOptions, resolve
from vae_tune.progress import StudyProgress
from vae_tune.promote import Promotion
from vae_tune.promote import promote as run_promotion
from vae_tune.report import build_report
from vae_tune.space import SearchSpace, load_space
from vae_tune.storage import dashboard_command, default_storage, open_storage
from vae_tune.study import (
    Log,
    StudyOptions,
    StudySummary,
    load_existing,
    run_study,
    study_splits,
    summarize,
)
from vae_tune.tasks import AutoencoderTask, HeadTask, PixelTask, Task
from vae_tune.tracking import Tracker, default_tracking_uri
from vae_tune.workers import run_workers


@dataclass(frozen=True)
class StudyRequest:
    stage: str
    n_trials: int | None = None  # None: the space file's study.n_trials, else 12
    timeout: float | None = None
    epochs: int | None = None
    study_name: str | None = None
    storage: str | None = None
    tracking_uri: str | None = None
    space: Path | None = None
    dataset: str = "fashion-mnist"
    data_dir: Path | None = None
    train_size: int | None = None
    val_size: int = 12_000
    seed: int | None = None  # None: the space file's sampler seed, else 0
    device: str = "auto"
    sampler: str | None = None
    pruner: str | None = None
    force: bool = False
    encoder: str = "ae"  # mlp: the stage whose encoder the head is trained on
    encoder_study: str | None = None  # mlp: that stage's study [default: ENCODER-DATASET]
    workers: int = 1  # processes on this machine joining the study
    patience: int | None = None  # stop after this many finished trials without a new best
    deadline: float | None = None  # time.time() after which no trial may end (the pipeline's)
    epoch_s_hint: float | None = None  # a measured epoch time, until the study measures its own

    @property
    def default_study_name(self) -> str:
        if self.stage == "mlp":
            return f"mlp-{self.encoder}-{self.dataset}"
        return f"{self.stage}-{self.dataset}"


@dataclass(frozen=True)
class StudyResult:
    summary: StudySummary
    dashboard_command: str
    mlflow_command: str


@dataclass(frozen=True)
class StudySetup:
    """Everything a process needs to run trials of the requested study."""

    space: SearchSpace
    storage: BaseStorage
    tracker: Tracker
    task: Task
    options: StudyOptions


def run(
    request: StudyRequest,
    log: Log = print,
    root: Path | None = None,
    progress: StudyProgress | None = None,
) -> StudyResult:
    """Run the requested study with the project folder `root` (default: the current one)."""
    root = root or Path.cwd()
    setup = study_setup(request, root, log)
    if request.workers == 1:
        summary = run_study(
            setup.space, setup.task, setup.storage, setup.tracker, setup.options, log, progress
        )
    else:
        summary = run_workers(request, root, setup, study_setup, log)
    if isinstance(setup.task, HeadTask):
        _record_baselines(
            setup.tracker, summary.experiment_id, setup.task, setup.options.seed, log
        )
    return StudyResult(
        summary,
        dashboard_command(_shown_path(request.storage or default_storage(root), root)),
        mlflow_command(setup.tracker.tracking_uri, root),
    )


def summary_of(study_name: str, storage: BaseStorage) -> StudySummary:
    """The summary of a study that has run, without running it."""
    study = load_existing(study_name, storage)
    attrs = study.user_attrs
    return summarize(study, attrs["mlflow_experiment_id"], attrs["mlflow_parent_run_id"])


def study_setup(request: StudyRequest, root: Path, log: Log) -> StudySetup:
    """Validate the space, open the stores, resolve device and encoder, load the data."""
    space, run_options = _prepare_space(request, root)
    storage, tracker = open_stores(request.storage, request.tracking_uri, root, write=True)
    device = resolve_device(request.device)
    seed = run_options.seed
    # The encoder first: a missing encoder study is reported before any data is loaded.
    encoder = (
        _encoder(request, seed, storage, tracker, root, device, log)
        if request.stage == "mlp"
        else None
    )
    log(f"loading {request.dataset} on {device}")
    splits = load_splits(
        request.dataset,
        request.data_dir,
        val_size=request.val_size,
        train_size=request.train_size,
        seed=seed,
        device=device,
    )
    task = make_task(request.stage, splits, encoder)
    options = StudyOptions(
        study_name=request.study_name or request.default_study_name,
        n_trials=run_options.n_trials,
        timeout=request.timeout,
        seed=seed,
        device=device,
        force=request.force,
        patience=run_options.patience,
        deadline=request.deadline,
        epoch_s_hint=request.epoch_s_hint,
    )
    return StudySetup(space, storage, tracker, task, options)


@dataclass(frozen=True)
class PromoteRequest:
    stage: str
    study_name: str | None = None
    storage: str | None = None
    tracking_uri: str | None = None
    dataset: str = "fashion-mnist"
    data_dir: Path | None = None
    device: str = "auto"
    top_k: int = 3
    seeds: int = 0
    force: bool = False
    encoder: str = "ae"

    @property
    def default_study_name(self) -> str:
        return StudyRequest(
            self.stage, dataset=self.dataset, encoder=self.encoder
        ).default_study_name


def promote(request: PromoteRequest, log: Log = print, root: Path | None = None) -> Promotion:
    """Promote the best trials of a study: one retrain, one test evaluation, registered."""
    root = root or Path.cwd()
    storage, tracker = open_stores(request.storage, request.tracking_uri, root)
    study, task = _finished_study(
        request.stage, request.study_name or request.default_study_name, storage, tracker,
        root, request.data_dir, resolve_device(request.device), log,
    )  # fmt: skip
    result = run_promotion(
        study,
        task,
        tracker,
        data_dir=request.data_dir,
        top_k=request.top_k,
        seeds=request.seeds,
        force=request.force,
        log=log,
    )
    path = _write_report(storage, tracker, task.splits.dataset, root / "reports")
    tracker.log_text(result.run_id, path.read_text(), "report.md")
    log(f"report: {_shown_path(str(path), root)}")
    return result


@dataclass(frozen=True)
class CurveRequest:
    stage: str
    sizes: tuple[int, ...] = (20_000, 30_000, 40_000, 50_000, 60_000)
    study_name: str | None = None
    storage: str | None = None
    tracking_uri: str | None = None
    dataset: str = "fashion-mnist"
    data_dir: Path | None = None
    device: str = "auto"
    encoder: str = "ae"


def curve(request: CurveRequest, log: Log = print, root: Path | None = None) -> Curve:
    """The promoted configuration of a study retrained on growing subsets, each tested once."""
    root = root or Path.cwd()
    storage, tracker = open_stores(request.storage, request.tracking_uri, root)
    name = (
        request.study_name
        or StudyRequest(
            request.stage, dataset=request.dataset, encoder=request.encoder
        ).default_study_name
    )
    study, task = _finished_study(request.stage, name, storage, tracker, root, request.data_dir,
                                  resolve_device(request.device), log)  # fmt: skip
    result = learning_curve(study, task, request.sizes, tracker, data_dir=request.data_dir,
                            log=log)  # fmt: skip
    path = _write_report(storage, tracker, task.splits.dataset, root / "reports")
    log(f"report: {_shown_path(str(path), root)}")
    return result


def _finished_study(
    stage: str,
    study_name: str,
    storage: BaseStorage,
    tracker: Tracker,
    root: Path,
    data_dir: Path | None,
    device: torch.device,
    log: Log,
) -> tuple[optuna.Study, Task]:
    """A study that has run, and the task it trained, rebuilt from the settings stored on it:
    the same split, and for a head the very encoder it was trained on."""
    study = load_existing(study_name, storage)
    settings = study.user_attrs["settings"]
    if settings["stage"] != stage:
        raise VaeTuneError(f"study {study.study_name!r} is a {settings['stage']} study")
    encoder = None
    if stage == "mlp":
        encoder = encoder_from_lineage(settings["encoder"], storage, tracker, encoder_cache(root),
                                       data_dir=data_dir, device=device, log=log)  # fmt: skip
    splits = study_splits(study, data_dir, device)
    lineage = settings.get("encoder", {})
    return study, make_task(stage, splits, (encoder, lineage) if encoder is not None else None)


def make_task(
    stage: str, splits: Splits, encoder: tuple[nn.Module, dict[str, str]] | None = None
) -> Task:
    """What a stage trains: a head on `(encoder, lineage)`, a pixel CNN, or an AE/VAE."""
    if encoder is not None:
        return HeadTask(encoder[0], splits, lineage=encoder[1])
    if stage == "cnn":
        return PixelTask(splits)
    return AutoencoderTask(stage, splits)


def report(
    dataset: str,
    storage: str | None = None,
    tracking_uri: str | None = None,
    root: Path | None = None,
) -> Path:
    """Write reports/DATASET.md and attach it to every promotion run of the dataset's studies."""
    root = root or Path.cwd()
    opened, tracker = open_stores(storage, tracking_uri, root)
    path = _write_report(opened, tracker, dataset, root / "reports")
    text = path.read_text()
    for summary in optuna.get_all_study_summaries(opened, include_best_trial=False):
        if summary.user_attrs.get("settings", {}).get("dataset") == dataset:
            for record in summary.user_attrs.get("promotions", {}).values():
                tracker.log_text(record["run_id"], text, "report.md")
    return path


def _write_report(storage: BaseStorage, tracker: Tracker, dataset: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dataset}.md"
    path.write_text(build_report(storage, tracker, dataset))
    return path


def open_stores(
    storage: str | None, tracking_uri: str | None, root: Path, write: bool = False
) -> tuple[BaseStorage, Tracker]:
    """The Optuna storage and the MLflow tracker, defaults resolved against `root`."""
    uri = tracking_uri or default_tracking_uri(root)
    opened = open_storage(storage or default_storage(root), write=write)
    return opened, Tracker(uri, artifact_root=local_artifact_root(uri))


def trials_table(
    study_name: str, storage: str | None, tracking_uri: str | None, root: Path | None = None
) -> tuple[optuna.Study, pd.DataFrame]:
    """A study's trials joined with their MLflow runs."""
    opened, tracker = open_stores(storage, tracking_uri, root or Path.cwd())
    study = load_existing(study_name, opened)
    return study, tables.trials_table(study, tracker)


def encoder_cache(root: Path) -> Path:
    return root / "studies" / "encoders"


def default_space_path(stage: str, root: Path) -> Path:
    """`search_spaces/STAGE.yaml` in the project folder, else the one shipped beside the package."""
    local = root / "search_spaces" / f"{stage}.yaml"
    if local.is_file():
        return local
    return Path(vae_tune.__file__).resolve().parent.parent / "search_spaces" / f"{stage}.yaml"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise VaeTuneError(f"--device: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VaeTuneError(f"--device {name}: CUDA is not available on this machine")
    return device


def local_artifact_root(tracking_uri: str) -> Path | None:
    """Artifacts of a local SQLite store go to `mlartifacts/` beside the database."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts"
    return None


def mlflow_command(tracking_uri: str, root: Path) -> str:
    if tracking_uri.startswith("sqlite:///"):
        db = _shown_path(tracking_uri.removeprefix("sqlite:///"), root)
        artifacts = _shown_path(str(local_artifact_root(tracking_uri)), root)
        return f"mlflow ui --backend-store-uri sqlite:///{db} --default-artifact-root {artifacts}"
    return f"open {tracking_uri} in a browser"


def _prepare_space(request: StudyRequest, root: Path) -> tuple[SearchSpace, RunOptions]:
    space = load_space(request.space or default_space_path(request.stage, root))
    if space.stage != request.stage:
        raise VaeTuneError(
            f"{space.source} is a search space for {space.stage!r}, not {request.stage!r}"
        )
    typed = CommandLine(seed=request.seed, n_trials=request.n_trials, epochs=request.epochs,
                        sampler=request.sampler, pruner=request.pruner,
                        patience=request.patience)  # fmt: skip
    return resolve(typed, space)


def _encoder(
    request: StudyRequest,
    seed: int,
    storage: BaseStorage,
    tracker: Tracker,
    root: Path,
    device: torch.device,
    log: Log,
) -> tuple[nn.Module, dict[str, str]]:
    return resolve_encoder(
        request.encoder_study or f"{request.encoder}-{request.dataset}",
        storage,
        tracker,
        encoder_cache(root),
        split={"dataset": request.dataset, "val_size": request.val_size, "seed": seed},
        data_dir=request.data_dir,
        device=device,
        log=log,
    )


def _record_baselines(
    tracker: Tracker, experiment_id: str, task: HeadTask, seed: int, log: Log
) -> None:
    """Logistic-regression baselines on the same split, once per encoder, in the same experiment."""
    encoder_run = task.lineage["encoder.run_id"]
    done = f"tags.`vae_tune.role` = 'baseline' and tags.`encoder.run_id` = '{encoder_run}'"
    if tracker.client.search_runs([experiment_id], filter_string=done):
        return
    log("baselines: logistic regression on latents, PCA components and pixels")
    train_z, val_z = task.latents()
    s = task.splits
    scores = logistic_baselines(train_z, val_z, s.train_x, s.val_x, s.train_y, s.val_y, seed)
    for name, accuracy in scores.items():
        run_id = tracker.start_run(
            experiment_id,
            f"baseline-{name}",
            params={"baseline": name, "latent_dim": train_z.shape[1], "seed": seed},
            tags={"vae_tune.role": "baseline", **task.lineage},
        )
        tracker.log_metrics(run_id, {"val_accuracy": accuracy}, step=0)
        tracker.end_run(run_id, "FINISHED")
        log(f"  {name}: val_accuracy {accuracy:.4f}")


def _shown_path(path: str, root: Path) -> str:
    """A path relative to the project folder when it is inside it: shorter commands to copy."""
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return path


def serve_uis(
    storage: str | None = None,
    tracking_uri: str | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    log: Log = print,
    root: Path | None = None,
) -> None:
    """optuna-dashboard on the study storage and the MLflow UI on the tracking store, until
    Ctrl-C. `port` is the dashboard's, the MLflow UI takes the next one; free ports otherwise."""
    root = root or Path.cwd()
    location = storage or default_storage(root)
    if "://" not in location and not Path(location).is_file():
        raise VaeTuneError(f"no study storage at {location}: run `vae-tune study` first")
    uri = tracking_uri or default_tracking_uri(root)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise VaeTuneError(f"no MLflow store at {uri}: run `vae-tune study` first")
    ports = (port, port + 1) if port else (servers.free_port(host), servers.free_port(host))
    for p in ports:
        servers.check_port(host, p)
    logs = root / "studies" / "logs"
    both = [
        servers.dashboard_server(location, host, ports[0], logs),
        servers.mlflow_server(uri, local_artifact_root(uri), host, ports[1], logs),
    ]
    log("starting optuna-dashboard and the MLflow UI ...")
    try:
        servers.start(both)
        for server in both:
            log(f"{server.name}: {server.url}")
        log("Ctrl-C stops both.")
        while all(s.process.poll() is None for s in both):
            time.sleep(0.5)
        dead = next(s for s in both if s.process.poll() is not None)
        raise VaeTuneError(f"{dead.name} stopped; its log: {dead.log}")
    except KeyboardInterrupt:
        log("stopping both servers")
    finally:
        servers.stop(both)
