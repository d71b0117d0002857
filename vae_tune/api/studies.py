"""`study` and `pipeline`: the use cases that search, as keyword calls with the CLI's options.

Each builds the request the use case runs (`runner.study`, `pipeline.run_pipeline`) from
explicit arguments, so a script, a notebook and `vae-tune` take the same path below here.
"""

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from vae_tune.api._common import (
    DEFAULT_DATASET,
    Log,
    ProjectLike,
    dataset_name,
    log_of,
    open_project,
    optional_path,
)
from vae_tune.errors import VaeTuneError
from vae_tune.logs import quiet_libraries
from vae_tune.progress import EpochUpdate, LiveProgress, PlainProgress, StudyProgress
from vae_tune.space.spaces import SearchSpace
from vae_tune.space.stages import stage as stage_of
from vae_tune.studies.plan import StudyRequest
from vae_tune.usecases import runner
from vae_tune.usecases.budget import parse_budget
from vae_tune.usecases.pipeline import PipelineRequest, PipelineResult, run_pipeline
from vae_tune.usecases.runner import StudyResult

ProgressCallback = Callable[[EpochUpdate], None]


class NoTrialCompletedError(VaeTuneError):
    """A study ran, and every trial was pruned or failed: `.result` holds what it recorded."""

    def __init__(self, result: StudyResult) -> None:
        super().__init__("no trial completed; see the failure reasons above")
        self.result = result


class _CallbackProgress(PlainProgress):
    """A user's function called after every epoch of every trial, beside the log's lines."""

    def __init__(self, log: Log, call: ProgressCallback) -> None:
        super().__init__(log)
        self.call = call

    def epoch(self, update: EpochUpdate, seconds: float) -> None:
        super().epoch(update, seconds)
        self.call(update)


def study(
    stage: str,
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    epochs: int | None = None,
    study_name: str | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    space: str | os.PathLike[str] | SearchSpace | None = None,
    dataset: str = DEFAULT_DATASET,
    data_dir: str | os.PathLike[str] | None = None,
    train_size: int | None = None,
    val_size: int = 12_000,
    seed: int | None = None,
    device: str = "auto",
    sampler: str | None = None,
    pruner: str | None = None,
    force: bool = False,
    encoder: str = "ae",
    encoder_study: str | None = None,
    workers: int = 1,
    workers_per_device: int | None = None,
    objective: str | None = None,
    patience: int | None = None,
    allow_pickle: bool = False,
    warm_start: str | Sequence[str] | None = None,
    trial_timeout: str | float | None = None,
    target: float | None = None,
    project: ProjectLike = None,
    log: Log | None = None,
    progress: ProgressCallback | StudyProgress | None = None,
) -> StudyResult:
    """Run (or resume) an Optuna study with pruning; every trial is an MLflow run.

    Args:
        stage: ``ae``, ``vae``, ``mlp`` (the head on an encoder) or ``cnn`` (pixels).
        n_trials: finished trials wanted (default: the space's ``study.n_trials``, else 12).
        timeout: stop starting new trials after this many seconds.
        epochs: epochs per trial (overrides ``train.epochs``).
        study_name: default ``STAGE-DATASET`` (``mlp-ENCODER-DATASET`` for a head).
        storage: Optuna storage, a journal file or URL (default ``studies/optuna.journal``).
        tracking_uri: MLflow tracking URI (default ``sqlite:///mlflow.db`` in the project).
        space: a search-space YAML file or a ``SearchSpace`` (default
            ``search_spaces/STAGE.yaml``).
        dataset: ``fashion-mnist``, ``mnist``, ``svhn``, ``cifar10``, ``folder:PATH`` or
            ``npz:PATH``.
        data_dir: data folder (default ``$VAE_TUNE_DATA`` or ``./data``).
        train_size: train on a stratified subset of this size.
        val_size: validation images.
        seed: seed of the split, the sampler and the trials (default: the space's, else 0).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        sampler, pruner: names overriding the space file.
        force: resume even though the space or settings changed.
        encoder: a head study: the stage whose encoder it is trained on (``ae`` or ``vae``).
        encoder_study: that encoder's study (default ``ENCODER-DATASET``).
        workers: processes on this machine sharing the study (each prints its own lines).
        workers_per_device: with several GPUs, this many workers on each before the next.
        objective: ``elbo``/``loss``, ``probe``, or both comma-separated (a Pareto front).
        patience: stop when the best value has not improved in this many finished trials.
        allow_pickle: a head's registered encoder may be a pickle (only for a trusted registry).
        warm_start: studies whose best configurations are enqueued first, clipped to this
            space: ``NAME`` (this storage) or ``STORAGE::NAME``, comma-separated or a list.
        trial_timeout: seconds (or ``90s``, ``10m``, ``1.5h``) after which a trial is stopped
            (interrupted, else killed) and failed, never retried; the study runs in worker
            processes to keep it.
        target: stop starting trials once a complete trial reaches this value of the metric
            (in its direction); single-objective studies only.
        project: a ``Project``, its folder, or None for the current folder.
        log: called with each line of progress; None (the default) prints nothing.
        progress: called with an ``EpochUpdate`` after every epoch of every trial (or a
            progress display, as the CLI's live bars).

    Returns:
        A ``StudyResult``: ``.study`` (the Optuna study), ``.parent_run_id``, ``.trials`` (a
        DataFrame, one row per trial), ``.summary`` and the links to watch it.

    Raises:
        VaeTuneError: a bad option, space file, dataset or store, named.
        NoTrialCompletedError: every trial was pruned or failed (its ``.result`` holds them).
    """
    out = log_of(log)
    stage_of(stage)  # an unknown stage is named before anything is read
    _at_least(n_trials=n_trials, timeout=timeout, epochs=epochs, val_size=val_size)
    _at_least(workers=workers, workers_per_device=workers_per_device, patience=patience)
    _at_least(10, train_size=train_size)
    quiet_libraries()
    if isinstance(space, SearchSpace) or space is None:
        chosen: Path | SearchSpace | None = space
    else:
        chosen = Path(space)
    request = StudyRequest(
        stage=stage,
        n_trials=n_trials,
        timeout=timeout,
        epochs=epochs,
        study_name=study_name,
        space=chosen,
        dataset=dataset_name(dataset),
        data_dir=optional_path(data_dir),
        train_size=train_size,
        val_size=val_size,
        seed=_seed(seed),
        sampler=sampler,
        pruner=pruner,
        force=force,
        encoder=_encoder(encoder),
        encoder_study=encoder_study,
        workers=workers,
        workers_per_device=workers_per_device,
        objective=objective,
        patience=patience,
        allow_pickle=allow_pickle,
        warm_start=warm_start
        if warm_start is None or isinstance(warm_start, str)
        else ",".join(warm_start),
        trial_timeout=trial_timeout,
        target=target,
    )
    found = open_project(project, storage=storage, tracking_uri=tracking_uri, device=device)
    shown: StudyProgress | None
    if progress is None or isinstance(progress, (PlainProgress, LiveProgress)):
        shown = progress
    else:
        shown = _CallbackProgress(out, progress)
    result = runner.study(request, found, out, shown)
    if result.summary.counts.get("COMPLETE", 0) == 0:
        raise NoTrialCompletedError(result)
    return result


def pipeline(
    *,
    encoder: str = "ae",
    budget: str | float | None = "30m",
    dataset: str = DEFAULT_DATASET,
    data_dir: str | os.PathLike[str] | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    seed: int | None = None,
    device: str = "auto",
    workers: int = 1,
    train_size: int | None = None,
    val_size: int = 12_000,
    warm_start: bool = False,
    encoder_target: float | None = None,
    head_target: float | None = None,
    trial_timeout: str | float | None = None,
    retrain: bool | None = None,
    project: ProjectLike = None,
    log: Log | None = None,
) -> PipelineResult:
    """Encoder study, its promotion, head study, its promotion and the report, in a budget.

    ``budget`` is wall time for all four stages: seconds, or text (``30m``, ``90s``, ``1.5h``,
    ``1h30m``), or ``"least"``/None (the least this machine needs for one trial of each study
    and both promotions). Run it again to resume: ended stages are skipped. ``warm_start``
    starts each new study from the best configurations of the latest other study of its stage
    on this project; ``encoder_target`` and ``head_target`` are each study's ``target``;
    ``trial_timeout`` applies to every trial. ``retrain=False`` promotes the trials' own
    models (``promote``'s ``retrain``), leaving the studies the time their retrains would
    take; None retrains only where that leaves the head's trials their full epochs. The other
    options are ``study``'s. Raises VaeTuneError on a bad option or a stage with no complete
    trial.
    """
    if isinstance(budget, str):
        budget_s = parse_budget(budget)
    elif budget is not None and budget <= 0:
        raise VaeTuneError(f"budget {budget!r}: the budget must be more than zero")
    else:
        budget_s = None if budget is None else float(budget)
    _at_least(workers=workers, val_size=val_size)
    _at_least(10, train_size=train_size)
    quiet_libraries()
    request = PipelineRequest(
        encoder=_encoder(encoder),
        budget_s=budget_s,
        dataset=dataset_name(dataset),
        data_dir=optional_path(data_dir),
        seed=_seed(seed),
        workers=workers,
        train_size=train_size,
        val_size=val_size,
        warm_start=warm_start,
        encoder_target=encoder_target,
        head_target=head_target,
        trial_timeout=trial_timeout,
        retrain=retrain,
    )
    found = open_project(project, storage=storage, tracking_uri=tracking_uri, device=device)
    return run_pipeline(request, found, log=log_of(log))


def _at_least(least: int = 1, **values: float | None) -> None:
    """The CLI's range checks, for a caller without a command line: the option's own name."""
    for name, value in values.items():
        if value is not None and value < least:
            raise VaeTuneError(f"{name}={value!r}: must be {least} or more")


def _seed(seed: int | None) -> int | None:
    if seed is not None and not 0 <= seed <= 2**32 - 1:  # what numpy's seeds take
        raise VaeTuneError(f"seed={seed!r}: must be from 0 to 2**32 - 1")
    return seed


def _encoder(encoder: str) -> str:
    if encoder not in ("ae", "vae"):
        raise VaeTuneError(f"encoder={encoder!r}: choose 'ae' or 'vae'")
    return encoder
