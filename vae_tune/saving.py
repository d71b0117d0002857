"""How a model is saved and rebuilt: its spec (which model, its config: plain data) and its
state_dict. The factory rebuilds the layers from the spec, so nothing pins a class path: modules
can move without breaking a registered model, and loading needs no pickle
(`torch.load(weights_only=True)`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from vae_tune.config import HeadConfig, ModelConfig, build_config
from vae_tune.models import (
    AUTOENCODERS,
    Autoencoder,
    Classifier,
    MLPHead,
    Model,
    PixelCNN,
    build_model,
)


def model_spec(model: Model) -> dict[str, Any]:
    """What rebuilds `model`'s layers: plain data only."""
    if isinstance(model, Classifier):
        return {
            "kind": "classifier",
            "encoder": model_spec(model.autoencoder),
            "head": model_spec(model.head),
        }
    if isinstance(model, MLPHead):
        return {
            "kind": "head",
            "config": _plain(model.cfg),
            "in_features": model.in_features,
            "n_classes": model.n_classes,
        }
    if isinstance(model, PixelCNN):
        return {"kind": "cnn", "config": _plain(model.cfg), "n_classes": model.n_classes}
    assert isinstance(model, Autoencoder)
    kind = next(k for k, cls in AUTOENCODERS.items() if type(model) is cls)
    return {"kind": kind, "config": _plain(model.cfg)}


def model_from_spec(spec: dict[str, Any]) -> Model:
    """A model with freshly initialised weights, of the shape `spec` describes."""
    kind = spec["kind"]
    if kind == "classifier":
        head, encoder = model_from_spec(spec["head"]), model_from_spec(spec["encoder"])
        assert isinstance(head, MLPHead) and isinstance(encoder, Autoencoder)
        return Classifier(encoder, head)
    if kind == "head":
        cfg = HeadConfig(**spec["config"])
        return MLPHead(spec["in_features"], cfg, spec["n_classes"])
    config = build_config({f"model.{k}": v for k, v in spec["config"].items()}).model
    if kind == "cnn":
        return PixelCNN(config, spec["n_classes"])
    return build_model(kind, config)


def _plain(config: ModelConfig | HeadConfig) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
