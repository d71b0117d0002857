"""Where a project keeps things, and the commands and URLs it prints: they work when pasted."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path

import pytest

from vae_tune.errors import VaeTuneError
from vae_tune.project.folder import Project
from vae_tune.tracking import links


def test_default_stores_live_in_the_project(tmp_path: Path) -> None:
    project = Project(tmp_path)
    assert project.storage_location == str(tmp_path / "studies" / "optuna.journal")
    assert project.tracking == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert project.artifact_root == tmp_path.resolve() / "mlartifacts"
    assert project.dashboard_command() == "optuna-dashboard studies/optuna.journal"
    assert project.mlflow_command() == (
        "mlflow ui --backend-store-uri sqlite:///mlflow.db --default-artifact-root mlartifacts"
    )


def test_a_storage_url_is_printed_as_it_was_typed(tmp_path: Path) -> None:
    url = "postgresql://user@db.example:5432/optuna"
    project = Project(tmp_path, storage=url, tracking_uri="http://mlflow.example:5000/")
    assert project.dashboard_command() == f"optuna-dashboard {url}"  # no slash lost
    assert project.mlflow_url == "http://mlflow.example:5000"  # links point at the server


def test_ui_ports_come_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("VAE_TUNE_DASHBOARD_PORT", "18080")
    monkeypatch.setenv("VAE_TUNE_MLFLOW_PORT", "15000")
    project = Project(tmp_path)
    assert (project.dashboard_url, project.mlflow_url) == (
        "http://127.0.0.1:18080",
        "http://127.0.0.1:15000",
    )
    monkeypatch.setenv("VAE_TUNE_MLFLOW_PORT", "many")
    with pytest.raises(VaeTuneError, match="VAE_TUNE_MLFLOW_PORT='many' is not a port"):
        Project(tmp_path)


def test_urls_ask_for_the_machine_learning_view_and_flat_sorted_runs() -> None:
    runs = links.mlflow_runs("http://h:5000", "3", "val_accuracy", "maximize")
    assert runs.startswith("http://h:5000/#/experiments/3/runs?workflowType=machine_learning")
    assert "orderByKey=metrics.%60val_accuracy%60&orderByAsc=false" in runs
    compare = links.mlflow_compare("http://h:5000", "3", ["a1", "b2"])
    query = compare.split("#/compare-runs?", 1)[1]
    assert query.startswith("runs=")  # MLflow's parser wants the runs first
    assert " " not in compare and '"' not in compare  # whole when pasted from a terminal
    parsed = dict(p.split("=", 1) for p in query.split("&"))
    assert json.loads(urllib.parse.unquote(parsed["runs"])) == ["a1", "b2"]
    assert links.dashboard_trial("http://h:8080", 0, 7) == (
        "http://h:8080/dashboard/studies/0/trials?numbers=7"
    )
