"""The use cases that look at a project's stores: report, compare, status, trials, export,
doctor and datasets. Each returns data (a path, rows, a DataFrame); the CLI renders it."""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vae_tune.analysis import tables
from vae_tune.api._common import (
    DEFAULT_DATASET,
    Log,
    ProjectLike,
    dataset_name,
    log_of,
    open_project,
)
from vae_tune.errors import VaeTuneError
from vae_tune.logs import quiet_libraries
from vae_tune.ops.doctor import Finding, diagnose
from vae_tune.space.stages import stage as stage_of
from vae_tune.usecases import runner
from vae_tune.usecases.runner import StudyRef

TRIAL_STATES = tuple(tables.STATES)  # complete, pruned, fail, running
FORMATS = ("csv", "parquet")


@dataclass(frozen=True)
class Comparison:
    """The picture `compare` wrote: a file in reports/ and an artifact of the parent run."""

    path: Path
    artifact: str


@dataclass(frozen=True)
class Exported:
    path: Path
    rows: int
    columns: int


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset `dataset=` takes, and how it is trained by default."""

    name: str
    classes: str
    augment: str  # what `train.augment: auto` picks
    about: str


def report(
    *,
    dataset: str = DEFAULT_DATASET,
    storage: str | None = None,
    tracking_uri: str | None = None,
    project: ProjectLike = None,
) -> Path:
    """Write reports/DATASET.md (studies, pruning funnel, champions, baselines, references),
    attach it to every promotion run of the dataset's studies, and return its path."""
    quiet_libraries()
    found = open_project(project, storage=storage, tracking_uri=tracking_uri)
    return runner.report(dataset_name(dataset), found)


def compare(
    stage: str,
    *,
    top: int = 5,
    trials: Sequence[int] = (),
    study_name: str | None = None,
    dataset: str = DEFAULT_DATASET,
    storage: str | None = None,
    tracking_uri: str | None = None,
    project: ProjectLike = None,
) -> Comparison:
    """The same validation images reconstructed by the best ``top`` trials (or the trials
    numbered in ``trials``), one row each: written to reports/ and to the study's MLflow
    parent run (compare/)."""
    if top < 1 or any(n < 0 for n in trials):
        raise VaeTuneError(f"top={top!r}, trials={tuple(trials)!r}: top from 1, trials from 0")
    quiet_libraries()
    found = open_project(project, storage=storage, tracking_uri=tracking_uri)
    path, artifact = runner.compare(_ref(stage, study_name, dataset), found, top, tuple(trials))
    return Comparison(path, artifact)


def status(
    *, storage: str | None = None, tracking_uri: str | None = None, project: ProjectLike = None
) -> list[dict[str, Any]]:
    """Every study in the storage, one dict each: study, stage, dataset, metric, trials by
    state (complete, pruned, fail, running), best value, running trial numbers."""
    quiet_libraries()
    return runner.status(open_project(project, storage=storage, tracking_uri=tracking_uri))


def trials(
    stage: str,
    *,
    study_name: str | None = None,
    encoder: str = "ae",
    dataset: str = DEFAULT_DATASET,
    state: str | None = None,
    sort: str = "value",
    limit: int | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    project: ProjectLike = None,
) -> pd.DataFrame:
    """A study's trials joined with their MLflow runs, one row each: number, state, value(s),
    params, epochs, reasons, ``mlflow_run_id`` and the run's last metrics.

    ``state`` keeps one state (complete, pruned, fail, running); ``sort`` names a column
    (``value``: best first); ``limit`` keeps the first rows. ``frame.attrs`` holds ``study``
    (its name) and ``total`` (its trials before filtering)."""
    if state is not None and state not in TRIAL_STATES:
        raise VaeTuneError(f"state={state!r}: choose one of {', '.join(TRIAL_STATES)}")
    if limit is not None and limit < 1:
        raise VaeTuneError(f"limit={limit!r}: must be 1 or more")
    quiet_libraries()
    ref = _ref(stage, study_name, dataset, encoder)
    found = open_project(project, storage=storage, tracking_uri=tracking_uri)
    study, frame = runner.trials_table(ref, found)
    best_first = sort == "value" and study.directions[0].name == "MAXIMIZE"
    chosen = tables.select(frame, state, sort, best_first, limit)
    chosen.attrs = {"study": ref.name, "total": len(frame)}
    return chosen


def export(
    stage: str,
    *,
    format: str = "csv",
    out: str | os.PathLike[str] | None = None,
    study_name: str | None = None,
    encoder: str = "ae",
    dataset: str = DEFAULT_DATASET,
    storage: str | None = None,
    tracking_uri: str | None = None,
    project: ProjectLike = None,
) -> Exported:
    """Optuna trials joined with their MLflow runs as one CSV or Parquet file (``out``,
    default ``STUDY.FORMAT`` in the current folder)."""
    if format not in FORMATS:
        raise VaeTuneError(f"format={format!r}: choose csv or parquet")
    quiet_libraries()
    ref = _ref(stage, study_name, dataset, encoder)
    found = open_project(project, storage=storage, tracking_uri=tracking_uri)
    _, frame = runner.trials_table(ref, found)
    path = Path(out) if out is not None else Path(f"{ref.name}.{format}")
    if path.is_dir() or not path.parent.is_dir():
        raise VaeTuneError(f"--out {path}: give a file in an existing folder")
    if format == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return Exported(path, len(frame), len(frame.columns))


def doctor(
    *,
    fix: bool = False,
    storage: str | None = None,
    tracking_uri: str | None = None,
    project: ProjectLike = None,
    log: Log | None = None,
) -> list[Finding]:
    """Check the stores (schemas, zombie trials, runs left RUNNING, orphaned artifacts); with
    ``fix``, repair what can be repaired safely. Each finding is ok, problem or fixed."""
    quiet_libraries()
    found = open_project(project, storage=storage, tracking_uri=tracking_uri)
    return diagnose(*found.open_stores(), fix=fix, log=log_of(log))


def datasets() -> list[DatasetInfo]:
    """The datasets ``dataset=`` takes, and how each is trained by default."""
    from vae_tune.data.catalog import BUILT_IN
    from vae_tune.data.defaults import auto_augment

    rows = [
        DatasetInfo(s.name, str(len(s.classes)), auto_augment(s.mirror), s.about)
        for s in BUILT_IN.values()
    ]
    return [
        *rows,
        DatasetInfo(
            "folder:PATH",
            "its class folders",
            "shift",
            "PNG or JPEG images, one folder a class (train/ and test/, or a held-out share)",
        ),
        DatasetInfo(
            "npz:PATH", "its labels", "shift", "arrays x_train, y_train [, x_test, y_test, classes]"
        ),
    ]


def _ref(stage: str, study_name: str | None, dataset: str, encoder: str = "ae") -> StudyRef:
    stage_of(stage)  # an unknown stage is named before any store is opened
    return StudyRef(stage, study_name, dataset_name(dataset), encoder)
