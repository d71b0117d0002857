"""Registered models: MLflow Models in the pt2 format beside vae-tune's spec + state_dict (no
class path pinned, loaded through the model factory); versions registered by earlier releases
still load: 0.2's spec alone as it is, 0.1's pickles only behind --allow-pickle."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from vae_tune.models.config import build_config
from vae_tune.models.nets import Classifier, Ensemble, MLPHead, Model, PixelCNN, build_model
from vae_tune.models.saving import model_from_spec, model_spec
from vae_tune.tracking.export import SPEC_FILE, exported
from vae_tune.tracking.registry import UntrustedModelError
from vae_tune.tracking.tracker import Tracker

FIXTURES = Path(__file__).resolve().parent / "fixtures"
IMAGE = torch.linspace(0, 1, 784).reshape(1, 1, 28, 28)


def small_models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    cfg = build_config(
        {
            "model.channels": [2, 3, 4],
            "model.hidden": 5,
            "model.latent_dim": 3,
            "model.batchnorm": True,
            "head.hidden1": 6,
            "head.hidden2": 4,
        }
    )
    ae = build_model("ae", cfg.model)
    classifiers = [Classifier(build_model("ae", cfg.model), MLPHead(3, cfg.head)) for _ in "ab"]
    return {
        "ae": ae,
        "vae": build_model("vae", cfg.model),
        "cnn": PixelCNN(cfg.model, 10),
        "classifier": Classifier(ae, MLPHead(3, cfg.head, 10)),
        "ensemble": Ensemble(classifiers),  # of a promotion's --members
        "mirrored": Ensemble(classifiers[:1], mirror=True),
    }


@pytest.mark.parametrize("kind", ["ae", "vae", "cnn", "classifier", "ensemble", "mirrored"])
def test_spec_rebuilds_the_same_layers(kind: str) -> None:
    model = small_models()[kind].eval()
    rebuilt = model_from_spec(model_spec(model))
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(IMAGE), model(IMAGE))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Tracker:
    """One MLflow store for the module: creating one takes seconds."""
    root = tmp_path_factory.mktemp("registry")
    return Tracker(f"sqlite:///{root / 'mlflow.db'}", artifact_root=root / "mlartifacts")


def register(
    store: Tracker,
    run_id: str,
    model: Model,
    name: str,
    images: torch.Tensor = IMAGE,
    tags: dict[str, str] | None = None,
) -> str:
    """`model` exported as a promotion exports it, then registered as a version of `name`."""
    with exported(model, images, name) as parts:
        return store.register_model(run_id, parts, name, tags=tags or {})


def test_registered_classifier_loads_without_pickle(store: Tracker) -> None:
    run_id = store.start_run(store.experiment_id("x"), "promote")
    model = small_models()["classifier"].eval()
    images = torch.rand(4, 1, 28, 28)
    version = register(store, run_id, model, "vae-tune-test-mlp", images, tags={"stage": "mlp"})
    assert store.artifact_root is not None
    folder = next(p.parent for p in store.artifact_root.rglob("MLmodel") if run_id in str(p))
    assert (folder / "data" / "model.pt2").is_file()
    # Plain data and tensors only: loads with weights_only, so no class path is involved.
    content = torch.load(folder / "extra_files" / SPEC_FILE, weights_only=True)
    assert content["spec"]["kind"] == "classifier" and content["format"] == "vae-tune/2"
    loaded = store.load_model("vae-tune-test-mlp", version)
    with torch.no_grad():
        assert torch.allclose(loaded(IMAGE), model(IMAGE))
    assert str(store.champion("vae-tune-test-mlp").version) == version


def test_an_autoencoder_is_registered_as_its_encoder_with_its_decoder_beside(
    store: Tracker,
) -> None:
    run_id = store.start_run(store.experiment_id("x"), "promote")
    model = small_models()["vae"].eval()
    version = register(store, run_id, model, "vae-tune-test-vae")
    registered = store.client.get_model_version("vae-tune-test-vae", version)
    assert registered.source.endswith(f"{run_id}/artifacts/model")
    assert registered.tags["vae_tune.decoder"] == f"runs:/{run_id}/decoder"
    parts = {a.path for a in store.client.list_artifacts(run_id)}
    assert {"model", "decoder"} <= parts
    loaded = store.load_model("vae-tune-test-vae", version)  # vae-tune's: the whole VAE
    with torch.no_grad():
        assert torch.allclose(loaded(IMAGE), model(IMAGE))


@pytest.mark.parametrize("name", ["v02_classifier_spec", "v02_vae_spec"])
def test_a_version_registered_by_0_2_still_loads(store: Tracker, tmp_path: Path, name: str) -> None:
    """The fixtures were saved by vae-tune 0.2 (`model/model.pt`: the spec and state_dict)."""
    run_id = store.start_run(store.experiment_id("v02"), "promote")
    store.client.log_artifacts(run_id, str(FIXTURES / name), "model")
    source = f"{store.client.get_run(run_id).info.artifact_uri}/model"
    store.client.create_registered_model(name)
    version = store.client.create_model_version(name, source, run_id=run_id).version
    loaded = store.load_model(name, str(version))
    expected = torch.load(FIXTURES / f"{name}_expected_output.pt", weights_only=True)
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(IMAGE), expected)


def register_fixture(store: Tracker, name: str, tmp_path: Path) -> str:
    """A fixture's `model/` folder logged to a new run and registered as version 1 of `name`."""
    run_id = store.start_run(store.experiment_id("old"), "promote")
    folder = tmp_path / "model"
    shutil.copytree(FIXTURES / name, folder)
    store.client.log_artifacts(run_id, str(folder), "model")
    source = f"{store.client.get_run(run_id).info.artifact_uri}/model"
    store.client.create_registered_model(name)
    return str(store.client.create_model_version(name, source, run_id=run_id).version)


@pytest.mark.parametrize("name", ["legacy_ae_pickle", "legacy_classifier_pickle"])
def test_a_version_registered_by_the_previous_release_loads_behind_allow_pickle(
    store: Tracker, tmp_path: Path, name: str
) -> None:
    """The fixtures were saved by vae-tune 0.1 (MLflow's pytorch flavour, pickled): a pickle
    runs code when it loads, so only the user's --allow-pickle loads it."""
    version = register_fixture(store, name, tmp_path)
    with pytest.raises(UntrustedModelError, match="--allow-pickle") as refused:
        store.load_model(name, version)
    assert f"{name} version {version}" in str(refused.value)
    assert "vae-tune did not write it" in str(refused.value)
    loaded = store.load_model(name, version, allow_pickle=True)
    expected = torch.load(FIXTURES / f"{name}_expected_output.pt", weights_only=True)
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(IMAGE), expected)


def test_a_version_from_another_run_than_its_lineage_is_refused(store: Tracker) -> None:
    run_id = store.start_run(store.experiment_id("x"), "promote")
    version = register(store, run_id, small_models()["ae"].eval(), "vae-tune-test-lineage")
    with pytest.raises(UntrustedModelError, match="not from run other-run"):
        store.load_model("vae-tune-test-lineage", version, run_id="other-run")
    assert store.load_model("vae-tune-test-lineage", version, run_id=run_id) is not None
