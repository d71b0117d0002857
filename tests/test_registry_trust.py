"""A registry is data, never code: a pickled model in the MLflow registry is refused by every
command that loads an encoder, even with MLflow's own pickle switch on, unless the user passes
--allow-pickle; a champion whose lineage is not a recorded promotion is refused whatever its
tags say. The pickle here writes a marker file when it is unpickled: the marker's absence is
the proof that nothing ran."""

from __future__ import annotations

import shutil
import urllib.parse
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pytorch
import pytest
import torch
from typer.testing import Result

from tests.helpers import invoke, mlflow_client
from vae_tune.tracking.registry import UntrustedModelError, load_model_folder

AE_MODEL = "vae-tune-fashion-mnist-ae"
TINY = ["--n-trials", "1", "--epochs", "1", "--train-size", "300", "--val-size", "100"]
PICKLE_ON = {"MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}


class Trojan(torch.nn.Module):
    """A model whose unpickling writes a file: what any pickle may do, and worse."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.marker = str(marker)
        self.linear = torch.nn.Linear(784, 3)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.flatten(1))

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).write_text("unpickled")
        super().__setstate__(state)


def log_trojan(root: Path, marker: Path, registered_as: str | None = None) -> Path:
    """A Trojan logged with MLflow's own `log_model`, pickle format, in the store of `root`
    (registered as a version of `registered_as`); a local copy of its folder."""
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    try:
        client = mlflow.MlflowClient()
        if client.get_experiment_by_name("attacker") is None:  # artifacts under root, not ./mlruns
            client.create_experiment("attacker", (root / "attacker").as_uri())
        mlflow.set_experiment("attacker")
        with mlflow.start_run():
            info = mlflow.pytorch.log_model(
                Trojan(marker),
                name="model",
                serialization_format="pickle",
                registered_model_name=registered_as,
                pip_requirements=["torch"],  # not inferred: that loads the model once more
            )
        copy = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(root / "trojan"))
    finally:
        mlflow.set_tracking_uri(None)  # no global URI left for the next test
    marker.unlink(missing_ok=True)  # logging copies the model once (deepcopy sets its state)
    return Path(copy)


def refused(result: Result, *words: str) -> str:
    """A command that ended with one message (exit 2), no traceback, saying `words`."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    text = " ".join(result.output.split())  # the console folds long lines
    for word in words:
        assert word in text, text
    return text


def test_a_pickled_folder_is_refused_even_with_mlflows_switch_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    marker = tmp_path / "unpickled"
    folder = log_trojan(tmp_path, marker)
    with pytest.raises(UntrustedModelError, match="--allow-pickle"):
        load_model_folder(folder)
    assert not marker.exists()
    # The marker does work: the user's own --allow-pickle unpickles it (and it is no model).
    with pytest.raises(UntrustedModelError, match="not a vae-tune model"):
        load_model_folder(folder, allow_pickle=True)
    assert marker.exists()


@pytest.mark.slow
def test_every_command_that_loads_an_encoder_refuses_a_pickled_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    root, marker = tmp_path, tmp_path / "unpickled"
    for args in (
        ["study", "ae", *TINY],
        ["promote", "ae", "--top-k", "1"],
        ["study", "mlp", *TINY],
    ):
        result = invoke(root, *args, env=PICKLE_ON)
        assert result.exit_code == 0, result.output
    client = mlflow_client(root)

    # 1. Someone registers a pickle as version 2, tags it as the study's and moves the alias.
    trojan = log_trojan(root, marker, registered_as=AE_MODEL)
    client.set_model_version_tag(AE_MODEL, "2", "study", "ae-fashion-mnist")
    client.set_registered_model_alias(AE_MODEL, "champion", "2")
    for flags in ([], ["--allow-pickle"]):  # the user's flag does not make a stranger's ours
        result = invoke(
            root, "study", "mlp", "--study-name", "head-a", *TINY, *flags, env=PICKLE_ON
        )
        refused(
            result,
            f"{AE_MODEL} version 2",
            "none of that study's promotion runs",
            "--allow-pickle does not change this",
        )
    assert not marker.exists()

    # 2. Someone replaces the files of the study's own promoted version with the pickle.
    client.set_registered_model_alias(AE_MODEL, "champion", "1")
    promoted = client.get_model_version(AE_MODEL, "1")
    artifacts = Path(urllib.parse.urlparse(client.get_run(promoted.run_id).info.artifact_uri).path)
    shutil.rmtree(artifacts / "model")
    shutil.copytree(trojan, artifacts / "model")
    commands = [
        ["study", "mlp", "--study-name", "head-b", *TINY],  # resolve_encoder: the champion
        ["promote", "mlp"],  # the head study's lineage: version 1
        ["curve", "mlp", "--sizes", "100"],
    ]
    for args in commands:
        result = invoke(root, *args, env=PICKLE_ON)
        text = refused(result, f"{AE_MODEL} version 1", "unpickle", "--allow-pickle")
        assert "vae-tune did not write it" in text
        assert not marker.exists(), args
    assert client.search_registered_models(filter_string=f"name = '{AE_MODEL[:-2]}mlp'") == []

    # The marker is no dud: the user who names the flag gets what the pickle does.
    result = invoke(root, "study", "mlp", "--study-name", "head-c", *TINY, "--allow-pickle")
    assert marker.exists() and result.exit_code == 2, result.output
