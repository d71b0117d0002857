"""Optuna storages from what a user types: a journal file path or any Optuna storage URL.

The default is a journal file under `studies/`: Optuna's recommended storage for several local
processes (SQLite gives "database is locked" with parallel writers), and one optuna-dashboard
reads as it is. A URL (`sqlite:///...`, `postgresql://...`) opens an RDB storage.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from vae_tune.errors import StoreError


def default_storage(root: Path) -> str:
    return str(root / "studies" / "optuna.journal")


def open_storage(location: str) -> BaseStorage:
    """A journal storage for a file path, an RDB storage for a URL; clear errors for either."""
    if "://" in location:
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # Heartbeats let Optuna fail trials of workers that died (RDB storages only).
                return RDBStorage(location, heartbeat_interval=60, grace_period=180)
        except Exception as exc:  # SQLAlchemy raises many types: bad dialect, host, driver
            raise StoreError(f"cannot open Optuna storage {location!r}: {exc}") from exc
    path = Path(location)
    if path.is_dir():
        raise StoreError(f"Optuna storage {location!r} is a folder; give a journal file path")
    if path.is_file() and path.read_bytes()[:16] == b"SQLite format 3\x00":
        raise StoreError(f"{location!r} is a SQLite database: pass it as 'sqlite:///{location}'")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as exc:
        raise StoreError(f"cannot open Optuna journal {location!r}: {exc.strerror}") from exc


def dashboard_command(location: str, artifact_dir: Path | None = None) -> str:
    """The optuna-dashboard command line that serves this storage."""
    command = f"optuna-dashboard {location}"
    if artifact_dir is not None:
        command += f" --artifact-dir {artifact_dir}"
    return command
