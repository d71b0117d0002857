"""MLflow's ways that vae-tune works around: a filter grammar without escapes, "not found"
told apart from a store that fails, and a server or database that does not answer (MLflow's
clients retry it for minutes), probed once with a short timeout; and a new SQLite store
created by one process at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from mlflow.exceptions import MlflowException

from vae_tune.errors import StoreError, VaeTuneError

# An http(s) tracking server has this long to answer one plain GET before it is named as down.
PROBE_TIMEOUT_S = 5.0


def probe_store(uri: str) -> None:
    """A tracking server or database that does not answer, named as down (StoreError)."""
    if uri.startswith(("http://", "https://")):
        probe_server(uri)
    elif uri.startswith(("postgresql", "mysql")):
        probe_database(uri)


def probe_server(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise StoreError, naming `uri`, unless the tracking server answers one GET within
    `timeout` seconds. Any HTTP answer (even 404 or 401) means a server is there; MLflow's
    client would instead retry a silent one for minutes."""
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return
    except OSError as exc:  # URLError, a refused connection, a time-out
        why = getattr(exc, "reason", exc)
        if isinstance(why, ssl.SSLError):  # something answered: MLflow's TLS settings decide
            return
        if isinstance(why, TimeoutError):
            why = f"no answer in {timeout:g} s"
        raise StoreError(
            f"MLflow tracking server {uri} is down or unreachable ({why}): start it, or "
            "give the address of one that runs with --tracking-uri"
        ) from exc


def probe_database(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Raise StoreError, naming `uri` (its password hidden), unless the PostgreSQL or MySQL
    database answers one connection within `timeout` seconds: MLflow's store retries a silent
    one with a growing backoff for minutes."""
    import sqlalchemy  # MLflow's own dependency; loaded only for a database store
    from sqlalchemy.pool import NullPool

    try:
        engine = sqlalchemy.create_engine(
            uri, connect_args={"connect_timeout": max(2, int(timeout))}, poolclass=NullPool
        )
    except (ImportError, sqlalchemy.exc.ArgumentError):  # no driver: MLflow says which
        return
    shown = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect():
            return
    except sqlalchemy.exc.DBAPIError as exc:
        raise StoreError(
            f"MLflow tracking database {shown} does not answer or refuses the connection "
            f"({reason(exc.orig or exc)}): start it, or give another --tracking-uri"
        ) from exc
    finally:
        engine.dispose()


def not_found(exc: Exception) -> bool:
    """MLflow's "no such model" (RESOURCE_DOES_NOT_EXIST) or "no such alias" (3.17 says
    INVALID_PARAMETER_VALUE, "Registered model alias champion not found.")."""
    if not isinstance(exc, MlflowException):
        return False
    if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    return exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in exc.message


def store_error(exc: Exception, what: str) -> VaeTuneError:
    """The error to raise for `exc`, met while reading `what`: "no such thing" when MLflow
    says so, else the store's failure (StoreError)."""
    if not_found(exc):
        return VaeTuneError(f"no {what}")
    return StoreError(f"cannot read {what}: {reason(exc)}")


def reason(exc: Exception) -> str:
    """The error's first line (SQLAlchemy's go on with the SQL and a link)."""
    text = exc.message if isinstance(exc, MlflowException) else f"{type(exc).__name__}: {exc}"
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def filter_literal(value: str) -> str | None:
    """`value` as a string literal of MLflow's search filter, or None where the grammar has
    none for it: it knows no escapes, so a value is quoted with the quote it does not hold."""
    if "\\" in value:
        return None
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    return None


@contextlib.contextmanager
def creation_lock(tracking_uri: str) -> Iterator[None]:
    """One process at a time opens a local SQLite store: the first one creates its tables, and
    two that migrate a new database at once fail ("Online migration expected to match one row",
    seen with two studies started in the same second)."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
