"""How a model is saved and rebuilt: its spec (which model, its config: plain data) and its
state_dict. The factory rebuilds the layers from the spec, so nothing pins a class path: modules
can move without breaking a registered model, and loading needs no pickle
(`torch.load(weights_only=True)`).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from vae_tune.models import contract
from vae_tune.models.config import OPTIONS, HeadConfig, ModelConfig, build_config
from vae_tune.models.factory import build_autoencoder
from vae_tune.models.graph import GraphEncoder, GraphOnlyError
from vae_tune.models.nets import (
    Autoencoder,
    Classifier,
    ConvVAE,
    Ensemble,
    MLPHead,
    Model,
    PixelCNN,
    PixelStandardizer,
)


def model_spec(model: Model | GraphEncoder) -> dict[str, Any]:
    """What rebuilds `model`'s layers: plain data only."""
    if isinstance(model, Classifier):
        return {
            "kind": "classifier",
            "encoder": model_spec(model.autoencoder),
            "head": model_spec(model.head),
        }
    if isinstance(model, Ensemble):
        members = [model_spec(m) for m in model.models]
        return {"kind": "ensemble", "members": members, "mirror": model.mirror}
    if isinstance(model, MLPHead):
        return {
            "kind": "head",
            "config": _plain(model.cfg),
            "in_features": model.in_features,
            "n_classes": model.n_classes,
        }
    if isinstance(model, PixelCNN):
        return {"kind": "cnn", "config": _plain(model.cfg), "n_classes": model.n_classes}
    if isinstance(model, GraphEncoder):  # a record of which graph: the graph is MLflow's part
        return {"kind": "graph", "latent_dim": model.latent_dim, "origin": dict(model.origin)}
    assert isinstance(model, Autoencoder)
    spec = {"kind": "vae" if isinstance(model, ConvVAE) else "ae", "config": _plain(model.cfg)}
    if contract.is_own(model.cfg.family):  # which code it was trained with: a record only
        spec["source_sha256"] = contract.source_hash(model.cfg.family)
    return spec


def model_from_spec(spec: dict[str, Any]) -> Model:
    """A model with freshly initialised weights, of the shape `spec` describes."""
    kind = spec["kind"]
    if kind == "classifier":
        head, encoder = model_from_spec(spec["head"]), model_from_spec(spec["encoder"])
        assert isinstance(head, MLPHead) and isinstance(encoder, Autoencoder)
        return Classifier(encoder, head)
    if kind == "ensemble":
        members = [model_from_spec(member) for member in spec["members"]]
        return Ensemble(members, mirror=spec["mirror"])
    if kind == "head":
        cfg = HeadConfig(**spec["config"])
        return MLPHead(spec["in_features"], cfg, spec["n_classes"])
    if kind == "graph":
        o = spec["origin"]
        raise GraphOnlyError(
            f"this model's encoder was {o['model']} version {o['version']} as its exported graph "
            f"({o['family']} could not be used: {o['why']}); vae-tune cannot rebuild it. "
            "MLflow loads the whole model as its own pt2 graph (mlflow.pytorch.load_model)"
        )
    config = build_config({f"model.{k}": v for k, v in spec["config"].items()}).model
    if kind == "cnn":
        return PixelCNN(config, spec["n_classes"])
    return build_autoencoder(kind, config)


def save_spec_file(model: Model, path: Path, format: str) -> None:
    """`model` as its spec and its state_dict: plain data and tensors only. Written beside and
    renamed into place: a process killed mid-write leaves no truncated file at `path`."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        torch.save({"format": format, "spec": model_spec(model), "state_dict": state}, partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def load_spec_file(path: Path) -> Model:
    """A model rebuilt from its spec file, without unpickling anything."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = model_from_spec(saved["spec"])
    load_weights(model, saved["state_dict"])
    return model.eval()


def load_weights(model: Model, state: dict[str, torch.Tensor]) -> None:
    """The state_dict into `model`. Models saved before they standardized their pixels (0.2)
    have no pixel statistics: theirs stay the identity (mean 0, std 1), as they were trained."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    allowed = ("pixel_mean", "pixel_std")
    if unexpected or any(not key.endswith(allowed) for key in missing):
        model.load_state_dict(state)  # raises, naming the keys that do not fit


def with_identity_standardizers(model: Model) -> Model:
    """A model unpickled from 0.1, whose classes had no pixel standardizer yet: it gets the
    identity one (mean 0, std 1), which is what it was trained without."""
    for module in model.modules():
        if isinstance(module, Autoencoder | PixelCNN) and "standardize" not in module._modules:
            module.standardize = PixelStandardizer(1)  # 0.1 models took 28x28 grayscale only
    return model


def _plain(config: ModelConfig | HeadConfig) -> dict[str, Any]:
    """The config as plain data; a user's model's own keys beside vae-tune's."""
    plain = asdict(config)
    own = dict(plain.pop(OPTIONS.removeprefix("model."), ()))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in {**plain, **own}.items()}
