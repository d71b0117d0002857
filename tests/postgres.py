"""A real PostgreSQL server for tests: Debian's `postgresql` package, a throwaway cluster.

The cluster lives in a fresh folder, listens on a free localhost port and is stopped and deleted
afterwards. PostgreSQL refuses to run as root, so as root the server runs as `postgres`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL not found: apt-get install postgresql (.ci/run does this)")
    return Path(found[-1]).parent


@contextlib.contextmanager
def postgres_server(port: int) -> Iterator[str]:
    """Start a server and yield a SQLAlchemy URL of an empty database on it."""
    bin_dir = _bin_dir()
    folder = Path(tempfile.mkdtemp(prefix="vae-tune-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = folder / "data"

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, text=True, timeout=120)

    run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(folder / "log"),
        "-w",
        "start",
    )
    try:
        run(
            str(bin_dir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "vae_tune",
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/vae_tune"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
