"""Optuna storages from what a user types: a journal file path or any Optuna storage URL.

The default is a journal file under `studies/`: Optuna's recommended storage for several local
processes (SQLite gives "database is locked" with parallel writers), and one optuna-dashboard
reads as it is. A URL (`sqlite:///...`, `postgresql://...`) opens an RDB storage, with Optuna's
heartbeats on so that a trial whose worker died on any machine is failed after a grace period.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from vae_tune.errors import StoreError

MIN_FREE_BYTES = 2**20  # a trial writes a few KiB to the journal; MLflow a few more


def default_storage(root: Path) -> str:
    return str(root / "studies" / "optuna.journal")


def open_storage(location: str, write: bool = False) -> BaseStorage:
    """A journal storage for a file path, an RDB storage for a URL; clear errors for either.
    `write`: the caller will run trials, so a journal's folder must have room for them."""
    if "://" in location:
        return _open_rdb(location)
    path = Path(location)
    if path.is_dir():
        raise StoreError(f"Optuna storage {location!r} is a folder; give a journal file path")
    if not write and not path.is_file():  # a command that only reads creates nothing
        raise StoreError(
            f"no Optuna journal at {location!r}: run `vae-tune study` first, or give the "
            "storage it wrote to with --storage"
        )
    if path.is_file() and path.read_bytes()[:16] == b"SQLite format 3\x00":
        raise StoreError(f"{location!r} is a SQLite database: pass it as 'sqlite:///{location}'")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if write:
            _check_writable(path.parent)
            if path.is_file():
                _heal_torn_tail(path)
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as exc:
        raise StoreError(f"cannot open Optuna journal {location!r}: {exc.strerror}") from exc


SCHEMA_RACE_RETRIES = 5
HEARTBEAT_INTERVAL_S = 60  # a running trial's worker says it lives this often
HEARTBEAT_GRACE_S = 180  # silent this long (by the database's clock): its worker is dead


def heartbeat_settings() -> tuple[int, int]:
    """The heartbeat interval and grace period of RDB storages, in seconds:
    VAE_TUNE_HEARTBEAT_INTERVAL_S and VAE_TUNE_HEARTBEAT_GRACE_S, read when a storage is
    opened (every worker of a study should be given the same), else 60 and 180. The grace
    period is how long a trial whose worker died (killed, its machine lost) holds its place
    in the study before another worker fails it and runs it again."""
    interval = _seconds("VAE_TUNE_HEARTBEAT_INTERVAL_S", HEARTBEAT_INTERVAL_S)
    grace = _seconds("VAE_TUNE_HEARTBEAT_GRACE_S", max(HEARTBEAT_GRACE_S, 3 * interval))
    if grace <= interval:
        raise StoreError(
            f"VAE_TUNE_HEARTBEAT_GRACE_S={grace} must exceed VAE_TUNE_HEARTBEAT_INTERVAL_S="
            f"{interval}: a live worker's trial would be failed between two of its heartbeats"
        )
    return interval, grace


def _seconds(variable: str, default: int) -> int:
    value = os.environ.get(variable)
    if value is None or not value.strip():
        return default
    try:
        seconds = int(value)
    except ValueError:
        seconds = 0
    if seconds <= 0:
        raise StoreError(f"{variable}={value!r}: give a whole number of seconds above 0")
    return seconds


def _open_rdb(location: str) -> RDBStorage:
    """Optuna's RDB storage. Processes that start together on a new database (an array of
    SLURM tasks) race to create its schema: PostgreSQL lets one create each table and type
    and fails the others with a duplicate; those open it again once the schema is there."""
    interval, grace = heartbeat_settings()
    for attempt in range(SCHEMA_RACE_RETRIES + 1):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # Heartbeats let Optuna fail trials of workers that died (RDB storages only).
                return RDBStorage(location, heartbeat_interval=interval, grace_period=grace)
        except Exception as exc:  # SQLAlchemy raises many types: bad dialect, host, driver
            text = str(exc)
            racing = "already exists" in text or "duplicate key" in text
            if not racing or attempt == SCHEMA_RACE_RETRIES:
                raise StoreError(f"cannot open Optuna storage {location!r}: {exc}") from exc
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _check_writable(folder: Path) -> None:
    """Refuse to start on a read-only or full folder: a study must be able to record trials."""
    if not os.access(folder, os.W_OK):
        raise StoreError(f"{folder} is not writable: the Optuna journal lives there")
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise StoreError(
            f"{folder} has {free // 1024} KiB free: free some space first "
            f"(a study needs at least {MIN_FREE_BYTES // 2**20} MiB)"
        )


def _heal_torn_tail(path: Path) -> None:
    """Drop a last record cut short by a full disk or a crash mid-write. Optuna's journal reader
    refuses any torn line followed by others, so the next append would break the whole study.
    The torn record was never acknowledged to its writer; dropped under the journal's lock."""
    with path.open("rb") as journal:
        journal.seek(0, os.SEEK_END)
        if journal.tell() == 0:
            return
        journal.seek(-1, os.SEEK_END)
        if journal.read(1) == b"\n":
            return
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        data = path.read_bytes()
        if not data.endswith(b"\n"):
            with path.open("r+b") as journal:
                journal.truncate(data.rfind(b"\n") + 1)
    finally:
        lock.release()


def dashboard_command(location: str, artifact_dir: Path | None = None) -> str:
    """The optuna-dashboard command line that serves this storage."""
    command = f"optuna-dashboard {location}"
    if artifact_dir is not None:
        command += f" --artifact-dir {artifact_dir}"
    return command
