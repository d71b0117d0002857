"""Helpers the test modules share: the real data, the CLI in-process and as a subprocess, the
stores of a project folder. Test modules import from here, never from one another."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from typer.testing import CliRunner, Result

from vae_tune.cli import app
from vae_tune.ops.storage import open_storage

REPO = Path(__file__).resolve().parent.parent
VAE_TUNE = str(Path(sys.executable).parent / "vae-tune")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Quick studies on real data: 1,000 training and 500 validation images.
SMALL = ["--epochs", "2", "--train-size", "1000", "--val-size", "500"]
STUDY = "ae-fashion-mnist"


def data_dir() -> Path:
    """`$VAE_TUNE_DATA`, else the shared folder beside the checkout; a clear failure if absent."""
    path = Path(os.environ.get("VAE_TUNE_DATA") or REPO.parent / "shared" / "data")
    if not (path / "fashion-mnist").is_dir():
        pytest.fail(f"real data not found in {path}: set VAE_TUNE_DATA to the IDX folder")
    return path.resolve()


@contextlib.contextmanager
def chdir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def invoke(root: Path, *args: str) -> Result:
    """Run `vae-tune ARGS` in-process with `root` as the project folder."""
    with chdir(root):
        return CliRunner(env={"VAE_TUNE_DATA": str(data_dir())}).invoke(app, list(args))


def env() -> dict[str, str]:
    """The environment of a `vae-tune` subprocess: the real data, unbuffered output."""
    return {**os.environ, "VAE_TUNE_DATA": str(data_dir()), "PYTHONUNBUFFERED": "1"}


def study_command(*args: str) -> list[str]:
    """`vae-tune study ae` on a small subset, as a subprocess command line."""
    return [VAE_TUNE, "study", "ae", *SMALL, *args]


def mlflow_client(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def load_study(root: Path, name: str = STUDY) -> optuna.Study:
    storage = open_storage(str(root / "studies" / "optuna.journal"))
    return optuna.load_study(study_name=name, storage=storage)


def runs_of(root: Path, name: str = STUDY) -> tuple[MlflowClient, list[Run], list[Run]]:
    """The MLflow client, the study's parent run(s) and its trial runs."""
    client = mlflow_client(root)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("vae_tune.role") == "study"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def promotion_runs(root: Path, study: str) -> list[Run]:
    client = mlflow_client(root)
    experiment = client.get_experiment_by_name(study)
    return client.search_runs(
        [experiment.experiment_id], filter_string="tags.`vae_tune.role` = 'promotion'"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
