"""What vae-tune loads from a registered `model/` folder, and what it refuses.

A registry is data, never code. vae-tune reads its own spec and state_dict (0.3 keeps them
beside the MLflow Model, 0.2 alone) without unpickling anything; any other folder (0.1's pickled
pytorch flavour, a model someone else registered) would run the code its pickle names, so it is
refused unless the user passes --allow-pickle. MLflow's own switch
(MLFLOW_ALLOW_PICKLE_DESERIALIZATION) is on by default in 3.17 and guards nothing here.

An encoder whose class (a user's model) cannot be used here is read as its exported pt2 graph,
with that switch turned off for the read, so that MLflow checks the archive for pickles first.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from mlflow.exceptions import MlflowException

from vae_tune.errors import VaeTuneError
from vae_tune.models import config, nets
from vae_tune.models.contract import MissingCodeError, UntrustedCodeError
from vae_tune.models.graph import GraphEncoder
from vae_tune.models.nets import Autoencoder, Model
from vae_tune.models.saving import load_spec_file, with_identity_standardizers
from vae_tune.tracking.export import SPEC_FILE

PICKLE_SWITCH = "MLFLOW_ALLOW_PICKLE_DESERIALIZATION"
LEGACY_MODEL_FILE = "model.pt"  # 0.2: the spec and state_dict were the registered model
ALLOW_PICKLE = "--allow-pickle"


class UntrustedModelError(VaeTuneError):
    """A registered version that vae-tune did not write, or that would need unpickling."""


def load_model_folder(path: Path, *, allow_pickle: bool = False, label: str = "") -> Model:
    """A registered `model/` folder as vae-tune's module: its spec and state_dict (0.3 keeps
    them beside the MLflow Model, 0.2 alone), read without unpickling. Anything else is
    MLflow's pickled pytorch flavour (0.1, or a model vae-tune did not write): unpickling runs
    whatever code the pickle names, so it is refused unless `allow_pickle` (--allow-pickle);
    MLflow's own switch (MLFLOW_ALLOW_PICKLE_DESERIALIZATION) is on by default and is no guard."""
    for spec in (path / "extra_files" / SPEC_FILE, path / LEGACY_MODEL_FILE):
        if spec.is_file():
            return load_spec_file(spec)
    label = label or str(path)
    if not allow_pickle:
        raise UntrustedModelError(
            f"{label} holds no vae-tune spec (extra_files/{SPEC_FILE}) or 0.2 {LEGACY_MODEL_FILE}:"
            " vae-tune did not write it, and loading it would unpickle code from the registry. "
            f"Refused; pass {ALLOW_PICKLE} only if you trust whoever registered it (a version "
            "registered by vae-tune 0.1 is such a pickle)."
        )
    import mlflow.pytorch  # only the old pickled format needs the flavour

    try:
        with _class_paths_of_0_1():
            pickled = mlflow.pytorch.load_model(str(path), map_location="cpu")
    except MlflowException as exc:  # MLflow's own switch turned off, or no pytorch model
        raise UntrustedModelError(f"{label} cannot be loaded: {exc.message}") from exc
    if not isinstance(pickled, Model):
        raise UntrustedModelError(f"{label} holds a {type(pickled).__name__}, not a vae-tune model")
    return with_identity_standardizers(pickled)


def load_encoder_folder(
    path: Path, *, allow_pickle: bool, label: str, origin: Mapping[str, str]
) -> Autoencoder | GraphEncoder:
    """A registered autoencoder's `model/` folder as an encoder for a head. When its class (a
    user's model) cannot be used here, its exported graph (images in, latents out) stands in,
    frozen: enough for a head on its latents. `origin`: the version's model, version, run_id."""
    try:
        model = load_model_folder(path, allow_pickle=allow_pickle, label=label)
    except (MissingCodeError, UntrustedCodeError) as exc:
        return _graph_encoder(path, label, {**origin, "why": str(exc)})
    if not isinstance(model, Autoencoder):
        raise UntrustedModelError(f"{label} holds a {type(model).__name__}, no encoder")
    return model


def _graph_encoder(path: Path, label: str, origin: dict[str, str]) -> GraphEncoder:
    """The folder's pt2 graph, read with MLflow's pickle switch off: MLflow then checks that
    nothing in the archive would be unpickled before torch reads it (torch.export.load falls
    back to unpickling what it cannot read otherwise)."""
    import mlflow.pytorch

    spec = torch.load(path / "extra_files" / SPEC_FILE, map_location="cpu", weights_only=True)
    config = spec["spec"]["config"]
    try:
        with _pickle_refused():
            graph = mlflow.pytorch.load_model(str(path))
    except MlflowException as exc:
        raise UntrustedModelError(f"{label}: its exported graph is refused: {exc.message}") from exc
    origin["family"] = config["family"]
    return GraphEncoder(graph, int(config["latent_dim"]), origin)


@contextmanager
def _pickle_refused() -> Iterator[None]:
    """MLflow's pickle switch off while a graph is read (it is read at each load)."""
    before = os.environ.get(PICKLE_SWITCH)
    os.environ[PICKLE_SWITCH] = "false"
    try:
        yield
    finally:
        if before is None:
            del os.environ[PICKLE_SWITCH]
        else:
            os.environ[PICKLE_SWITCH] = before


@contextmanager
def _class_paths_of_0_1() -> Iterator[None]:
    """0.1's pickles name its classes where 0.1 kept them: `vae_tune.config.ModelConfig`,
    `vae_tune.models.ConvAutoencoder`. While one is unpickled, those names lead to the same
    classes where they live now (`vae_tune.models.config`, `vae_tune.models.nets`)."""
    import vae_tune.models as package

    classes = {n: c for n, c in vars(nets).items() if getattr(c, "__module__", "") == nets.__name__}
    added = [name for name in classes if not hasattr(package, name)]
    had_config = "vae_tune.config" in sys.modules
    sys.modules.setdefault("vae_tune.config", config)
    for name in added:
        setattr(package, name, classes[name])
    try:
        yield
    finally:
        for name in added:
            delattr(package, name)
        if not had_config:
            del sys.modules["vae_tune.config"]
