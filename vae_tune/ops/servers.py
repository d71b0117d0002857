"""optuna-dashboard and the MLflow UI on this project's stores, started and stopped together.

Light: each is one process. optuna-dashboard runs on its single-threaded wsgiref server (not
gunicorn's master and workers); the MLflow UI is its FastAPI app under one uvicorn process,
without the job runner and huey consumers `mlflow ui` starts (a local UI runs no jobs). The
launcher imports neither torch nor the servers' own code.

Never lingering: each server asks the kernel to send it SIGTERM when its parent dies
(PR_SET_PDEATHSIG), so a SIGKILL of `vae-tune ui` takes them along; a Ctrl-C, a SIGTERM or a
hang-up (the terminal closing) stops them in order. Each runs in its own session, so a Ctrl-C
reaches the launcher only, and stops them once. Readiness is an HTTP answer, not a sleep.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from vae_tune.errors import VaeTuneError

BIN = Path(sys.executable).parent
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_TIMEOUT_S = 3.0


@dataclass
class Server:
    name: str
    argv: list[str]
    url: str
    ready_path: str
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def dashboard_server(
    storage: str, artifact_dir: Path, host: str, port: int, log_dir: Path
) -> Server:
    argv = [
        str(BIN / "optuna-dashboard"),
        storage,
        "--host",
        host,
        "--port",
        str(port),
        "--server",
        "wsgiref",
        "--artifact-dir",
        str(artifact_dir),
    ]
    return Server(
        "optuna-dashboard",
        argv,
        f"http://{host}:{port}",
        "/api/studies",
        log_dir / "optuna-dashboard.log",
    )


def mlflow_server(
    tracking_uri: str, artifact_root: Path | None, host: str, port: int, log_dir: Path
) -> Server:
    """MLflow's UI app under one uvicorn process: what `mlflow ui --workers 1` serves, without
    the CLI process above it and the job runner beside it."""
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        "mlflow.server.fastapi_app:app",
    ]
    env = {
        "_MLFLOW_SERVER_FILE_STORE": tracking_uri,
        "_MLFLOW_SERVER_REGISTRY_STORE": tracking_uri,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    if artifact_root is not None:
        env["_MLFLOW_SERVER_ARTIFACT_ROOT"] = str(artifact_root)
    ready = "/api/2.0/mlflow/experiments/search?max_results=1"
    return Server("MLflow UI", argv, f"http://{host}:{port}", ready, log_dir / "mlflow-ui.log", env)


def check_port(host: str, port: int, option: str) -> None:
    """A port another server listens on is refused; one a stopped server left connections in
    TIME_WAIT on is free (the servers reuse such addresses too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise VaeTuneError(
                f"port {port} on {host} is taken ({exc.strerror}): another `vae-tune ui` may "
                f"be running; stop it, or choose another port with {option}"
            ) from None


def start(servers: list[Server], timeout: float = 120.0) -> None:
    """Start every server and wait until each answers; stop them all if one does not."""
    try:
        for server in servers:
            server.log.parent.mkdir(parents=True, exist_ok=True)
            with server.log.open("wb") as log:
                server.process = subprocess.Popen(
                    server.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **server.env},
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
        for server in servers:
            _wait_ready(server, timeout)
    except BaseException:
        stop(servers)
        raise


def stop(servers: list[Server], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM to each server's process group, then SIGKILL to what is left after `timeout`."""
    for server in servers:
        if server.process is not None and server.process.poll() is None:
            _signal_group(server.process, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for server in servers:
        if server.process is None:
            continue
        try:
            server.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(server.process, signal.SIGKILL)
            server.process.wait()
        _signal_group(server.process, signal.SIGKILL)  # anything it started and left behind


def running(servers: list[Server]) -> bool:
    return all(s.process is not None and s.process.poll() is None for s in servers)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies, however it dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    process = server.process
    assert process is not None, "started first"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = server.log.read_text(errors="replace")[-2000:]
            raise VaeTuneError(f"{server.name} exited (code {process.returncode}):\n{tail}")
        try:
            with urllib.request.urlopen(server.url + server.ready_path, timeout=5):
                return
        except OSError:
            time.sleep(0.3)
    raise VaeTuneError(f"{server.name} did not answer at {server.url} within {timeout:.0f} s")


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(process.pid, sig)
