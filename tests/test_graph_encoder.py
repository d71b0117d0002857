"""A registered encoder whose class cannot be used here (a user's model, its package gone)
stands in as its exported graph for a frozen head, read only after MLflow has checked that
nothing in the archive would be unpickled.

The registered folder is the 0.4 fixture's AE champion (a real MLflow Model, pt2), with its
spec rewritten to name a model class that is nowhere to be imported."""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import mlflow.pytorch
import pytest
import torch

from tests.fixtures.make_project_0_4 import HERE
from vae_tune.errors import VaeTuneError
from vae_tune.models.graph import GraphEncoder, GraphOnlyError
from vae_tune.models.saving import model_from_spec, model_spec
from vae_tune.models.train import encode
from vae_tune.tracking.export import SPEC_FILE
from vae_tune.tracking.registry import UntrustedModelError, load_encoder_folder

CHAMPION = "b14761b0820b4e1780c15a114b26f589"  # the fixture's AE champion run
GONE = "gone_nets:ResNetAE"  # a user's class that no module here holds
ORIGIN = {"model": "vae-tune-fashion-mnist-ae", "version": "1", "run_id": CHAMPION}
SAMPLE_INPUTS = "model/data/sample_inputs/model.pt"  # a torch.save record inside the archive
SWITCH = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"


def registered_folder(tmp_path: Path) -> Path:
    """The champion's `model/` folder, its spec naming GONE as its model class."""
    source = HERE / "mlartifacts" / "ae-fashion-mnist" / CHAMPION / "artifacts" / "model"
    folder = tmp_path / "model"
    shutil.copytree(source, folder)
    spec_file = folder / "extra_files" / SPEC_FILE
    saved = torch.load(spec_file, weights_only=True)
    saved["spec"]["config"]["family"] = GONE
    torch.save(saved, spec_file)
    return folder


def load(folder: Path) -> GraphEncoder:
    encoder = load_encoder_folder(folder, allow_pickle=False, label="the champion", origin=ORIGIN)
    assert isinstance(encoder, GraphEncoder)
    return encoder


def test_an_encoder_whose_class_is_gone_stands_in_as_its_exported_graph(tmp_path: Path) -> None:
    folder = registered_folder(tmp_path)
    encoder = load(folder)
    images = torch.rand(6, 1, 28, 28)
    served = mlflow.pytorch.load_model(str(folder))  # what MLflow alone computes
    with torch.no_grad():
        expected = served(images)
    assert torch.equal(encode(encoder, images), expected)  # eval() reaches only the wrapper
    assert encoder.latent_dim == expected.shape[1]
    assert GONE in encoder.origin["why"] and encoder.origin["run_id"] == CHAMPION
    assert not any(p.requires_grad for p in encoder.parameters())
    with pytest.raises(GraphOnlyError, match=f"Make {GONE} importable again"):
        encoder.encoder_parameters()  # a fine-tuned head would train it


def test_a_classifier_on_a_graph_says_what_rebuilds_it(tmp_path: Path) -> None:
    """Its spec names the graph it was trained on; vae-tune cannot rebuild the encoder from it
    and says that MLflow loads the whole classifier."""
    spec = model_spec(load(registered_folder(tmp_path)))
    assert spec["kind"] == "graph" and spec["origin"]["family"] == GONE
    with pytest.raises(GraphOnlyError, match=r"MLflow loads the whole model .*load_model"):
        model_from_spec(spec)


class Planted:
    """Unpickling it writes a marker file: proof that code in the archive ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def test_a_graph_archive_that_would_unpickle_code_is_refused(tmp_path: Path) -> None:
    """The archive's sample inputs replaced by a pickle that runs code: torch.export.load
    falls back to unpickling it (shown below on a copy), so the graph is read only after
    MLflow's check, which refuses it; the code never runs."""
    folder = registered_folder(tmp_path)
    archive = folder / "data" / "model.pt2"
    marker = tmp_path / "ran"
    switch_before = os.environ.get(SWITCH)
    payload = io.BytesIO()
    torch.save({"x": Planted(marker)}, payload, pickle_module=pickle)
    records = {}
    with zipfile.ZipFile(archive) as original:
        records = {name: original.read(name) for name in original.namelist()}
    records[SAMPLE_INPUTS] = payload.getvalue()
    with zipfile.ZipFile(archive, "w") as planted:
        for name, content in records.items():
            planted.writestr(name, content)

    with pytest.raises(UntrustedModelError, match="its exported graph is refused") as refused:
        load(folder)
    assert isinstance(refused.value, VaeTuneError) and SAMPLE_INPUTS in str(refused.value)
    assert not marker.exists()
    assert os.environ.get(SWITCH) == switch_before  # MLflow's switch is put back as it was

    copy = tmp_path / "copy.pt2"
    shutil.copy(archive, copy)
    with contextlib.suppress(Exception):  # a working graph or not: the code runs first
        torch.export.load(copy)
    assert marker.read_text() == "ran"
