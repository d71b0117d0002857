"""A tracking store that fails or does not answer is named, with its address, within seconds:
never a hang on MLflow's retries, never read as "no champion"."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from tests.helpers import invoke
from vae_tune.errors import StoreError
from vae_tune.project.storage import open_storage
from vae_tune.tracking.tracker import Tracker


@pytest.fixture
def silent_port() -> Iterator[int]:
    """An address that accepts connections and never answers a byte (a hung server, a
    firewall that swallows packets after the handshake)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # kept open, never read, never answered
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    for connection in held:
        connection.close()
    listener.close()


def test_a_silent_tracking_server_is_named_as_down_within_seconds(
    tmp_path: Path, silent_port: int
) -> None:
    silent_server = f"http://127.0.0.1:{silent_port}"
    started = time.monotonic()
    result = invoke(
        tmp_path,
        "study", "ae", "--tracking-uri", silent_server,
        "--n-trials", "1", "--epochs", "1", "--train-size", "200", "--val-size", "100",
    )  # fmt: skip
    elapsed = time.monotonic() - started
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert elapsed < 30, f"took {elapsed:.0f} s"
    assert f"MLflow tracking server {silent_server} is down or unreachable" in text, text
    assert "Traceback" not in result.output
    journal = tmp_path / "studies" / "optuna.journal"
    if journal.exists():  # opened for writing, but no study was created in it
        assert optuna.get_all_study_summaries(open_storage(str(journal))) == []


def test_a_silent_tracking_database_is_named_as_down_within_seconds(silent_port: int) -> None:
    """MLflow's SQL store retries a database that does not answer with a growing backoff."""
    started = time.monotonic()
    uri = f"postgresql+psycopg://vae:secret@127.0.0.1:{silent_port}/mlflow"
    with pytest.raises(StoreError, match="does not answer") as down:
        Tracker(uri)
    assert time.monotonic() - started < 30
    assert f"postgresql+psycopg://vae:***@127.0.0.1:{silent_port}/mlflow" in str(down.value)
    assert "secret" not in str(down.value)


def test_a_failing_store_is_no_missing_champion(tmp_path: Path) -> None:
    database = tmp_path / "mlflow.db"
    uri = f"sqlite:///{database}"
    tracker = Tracker(uri, artifact_root=tmp_path / "mlartifacts")
    assert tracker.champion("vae-tune-fashion-mnist-ae") is None  # no such model: absent
    tracker.client.create_registered_model("vae-tune-fashion-mnist-ae")
    assert tracker.champion("vae-tune-fashion-mnist-ae") is None  # no such alias: absent
    database.write_bytes(b"this is no database" * 1000)  # the store breaks under the tracker
    with pytest.raises(StoreError, match="did not say which version") as failed:
        tracker.champion("vae-tune-fashion-mnist-ae")
    assert uri in str(failed.value)
