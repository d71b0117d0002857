"""The commands the study summary prints for serving the stores without `vae-tune ui` work:
optuna-dashboard and mlflow ui, as printed."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import TINY, free_port, invoke

pytestmark = pytest.mark.slow  # real studies on real data, subprocesses, servers

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    result = invoke(root, "study", "ae", "--n-trials", "3", *TINY)
    assert result.exit_code == 0, result.output
    commands = [line.strip() for line in result.output.splitlines()]
    dashboard = next(c for c in commands if c.startswith("optuna-dashboard "))
    mlflow_ui = next(c for c in commands if c.startswith("mlflow ui"))
    return root, dashboard, mlflow_ui


@contextmanager
def serve(command: str, cwd: Path, port: int):
    """Start a printed command on a free port; stop the whole process group afterwards."""
    argv = shlex.split(command)
    argv[0] = str(BIN / argv[0])
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    log = open(cwd / f"server-{port}.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def fetch(url: str, body: dict | None = None, timeout: float = 90.0):
    """GET (or POST JSON) once the server is up; JSON bodies are decoded."""
    deadline = time.monotonic() + timeout
    data = json.dumps(body).encode() if body is not None else None
    while True:
        try:
            headers = {"Content-Type": "application/json"}
            request = urllib.request.Request(url, data=data, headers=headers)
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                kind = response.headers.get("Content-Type", "")
                return json.loads(raw) if "json" in kind else raw.decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_optuna_dashboard_serves_the_study_and_its_trials(project) -> None:
    root, dashboard, _ = project
    with serve(dashboard, root, free_port()) as url:
        studies = fetch(f"{url}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["ae-fashion-mnist"]
        detail = fetch(f"{url}/api/studies/{studies[0]['study_id']}")
        assert len(detail["trials"]) == 3
        assert detail["objective_names"] == ["val_loss"]  # set by set_metric_names
        # Notes: the study's settings and space; each trial's outcome, params and MLflow run.
        assert "Search space" in detail["note"]["body"] and "stage: ae" in detail["note"]["body"]
        for trial in detail["trials"]:
            body = trial["note"]["body"]
            assert body.startswith(("**COMPLETE**", "**PRUNED**")) and "MLflow run [" in body
            assert "`model.latent_dim`" in body


def test_mlflow_ui_lists_the_runs_and_serves_artifacts(project) -> None:
    root, _, mlflow_ui = project
    with serve(mlflow_ui, root, free_port()) as url:
        experiment = fetch(
            f"{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=ae-fashion-mnist"
        )["experiment"]
        runs = fetch(
            f"{url}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment["experiment_id"]]}
        )["runs"]
        assert len(runs) == 4  # the study's parent run and three trials
        parent = next(
            r
            for r in runs
            if r["data"]["tags"] and any(t["key"] == "vae_tune.role" for t in r["data"]["tags"])
        )
        child = next(r for r in runs if r is not parent)
        assert {m["key"] for m in child["data"]["metrics"]} >= {"train_loss", "val_loss"}
        space = fetch(
            f"{url}/get-artifact?path=search_space.yaml&run_uuid={parent['info']['run_id']}"
        )
        assert "stage: ae" in space
