"""optuna-dashboard and the MLflow UI on this project's stores, started and stopped together.

Each server runs in its own process group, so stopping it also stops the workers it spawned
(the MLflow UI runs uvicorn workers). Readiness is an HTTP answer, not a sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vae_tune.errors import VaeTuneError

if TYPE_CHECKING:
    from vae_tune.project import Project

BIN = Path(sys.executable).parent


@dataclass
class Server:
    name: str
    argv: list[str]
    url: str
    ready_path: str
    log: Path
    process: subprocess.Popen | None = field(default=None, repr=False)


def dashboard_server(storage: str, host: str, port: int, log_dir: Path) -> Server:
    argv = [str(BIN / "optuna-dashboard"), storage, "--host", host, "--port", str(port)]
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
    argv = [
        str(BIN / "mlflow"),
        "ui",
        "--backend-store-uri",
        tracking_uri,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if artifact_root is not None:
        argv += ["--default-artifact-root", str(artifact_root)]
    ready = "/api/2.0/mlflow/experiments/search?max_results=1"
    return Server("MLflow UI", argv, f"http://{host}:{port}", ready, log_dir / "mlflow-ui.log")


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port(host: str, port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise VaeTuneError(
                f"port {port} on {host} is taken ({exc.strerror}): "
                "choose another with --port, or leave it out"
            ) from None


def start(servers: list[Server], timeout: float = 120.0) -> None:
    """Start every server and wait until each answers; stop them all if one does not."""
    for server in servers:
        server.log.parent.mkdir(parents=True, exist_ok=True)
        with server.log.open("w") as log:
            server.process = subprocess.Popen(
                server.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
    try:
        for server in servers:
            _wait_ready(server, timeout)
    except BaseException:
        stop(servers)
        raise


def stop(servers: list[Server], timeout: float = 20.0) -> None:
    for server in servers:
        if server.process is not None and server.process.poll() is None:
            _signal_group(server.process, signal.SIGTERM)
    for server in servers:
        if server.process is None:
            continue
        try:
            server.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(server.process, signal.SIGKILL)
            server.process.wait()
        _signal_group(server.process, signal.SIGKILL)  # workers left behind by the leader


def _wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    process = server.process
    assert process is not None, "started first"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = server.log.read_text()[-2000:]
            raise VaeTuneError(f"{server.name} exited (code {process.returncode}):\n{tail}")
        try:
            with urllib.request.urlopen(server.url + server.ready_path, timeout=5):
                return
        except OSError:
            time.sleep(0.3)
    raise VaeTuneError(f"{server.name} did not answer at {server.url} within {timeout:.0f} s")


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, sig)


def serve(project: Project, host: str, port: int | None, log: Callable[[str], None]) -> None:
    """optuna-dashboard on the study storage and the MLflow UI on the tracking store, until
    Ctrl-C. `port` is the dashboard's, the MLflow UI takes the next one; free ports otherwise."""
    if not project.has_storage:
        raise VaeTuneError(
            f"no study storage at {project.storage_location}: run `vae-tune study` first"
        )
    if not project.has_tracking_store:
        raise VaeTuneError(f"no MLflow store at {project.tracking}: run `vae-tune study` first")
    ports = (port, port + 1) if port else (free_port(host), free_port(host))
    for p in ports:
        check_port(host, p)
    both = [
        dashboard_server(project.storage_location, host, ports[0], project.logs),
        mlflow_server(project.tracking, project.artifact_root, host, ports[1], project.logs),
    ]
    log("starting optuna-dashboard and the MLflow UI ...")
    try:
        start(both)
        for server in both:
            log(f"{server.name}: {server.url}")
        log("Ctrl-C stops both.")
        while all(s.process is not None and s.process.poll() is None for s in both):
            time.sleep(0.5)
        dead = next(s for s in both if s.process is None or s.process.poll() is not None)
        raise VaeTuneError(f"{dead.name} stopped; its log: {dead.log}")
    except KeyboardInterrupt:
        log("stopping both servers")
    finally:
        stop(both)
