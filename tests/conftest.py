"""Shared fixtures: the real datasets, project folders, the CLI in-process, free ports."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

# Tables are read back by tests: render them wide enough not to fold (rich reads this once).
os.environ.setdefault("COLUMNS", "250")

from vae_tune.cli import app

REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """`$VAE_TUNE_DATA`, else the shared folder beside the checkout; a clear failure if absent."""
    path = Path(os.environ.get("VAE_TUNE_DATA") or REPO.parent / "shared" / "data")
    if not (path / "fashion-mnist").is_dir():
        pytest.fail(f"real data not found in {path}: set VAE_TUNE_DATA to the IDX folder")
    return path.resolve()


@pytest.fixture(scope="session")
def real_data() -> Path:
    return data_dir()


@contextlib.contextmanager
def chdir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def invoke(root: Path, *args: str):
    """Run `vae-tune ARGS` in-process with `root` as the project folder."""
    with chdir(root):
        return CliRunner(env={"VAE_TUNE_DATA": str(data_dir())}).invoke(app, list(args))


def mlflow_client(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
