"""An autoencoder for a stage and a config: a built-in one, or the user's own model wrapped so
that vae-tune trains, judges, pictures and exports it as it does its own.

The wrapper keeps what is vae-tune's: the per-channel pixel standardizer (fitted on the training
images, saved with the model), the losses (an AE's mean squared error, a VAE's ELBO with its
likelihood) and the latent metrics. The user's module (`net`) gives `encode`, `decode` and, for
a VAE, `posterior` (see contract.py).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vae_tune.models import contract
from vae_tune.models.config import ModelConfig
from vae_tune.models.nets import (
    Autoencoder,
    ConvAutoencoder,
    ConvVAE,
    Model,
    PixelStandardizer,
    build_model,
)

# A decoder's pixels in [0, 1] as the logits the likelihood scores: clamped off 0 and 1 first.
EPS = 1e-6


class _Own(Autoencoder):
    """What both wrappers share: the standardizer, the user's module and its decoder."""

    net: Any  # the user's module: its methods are the contract's, not nn.Module's

    def _hold(self, cfg: ModelConfig, vae: bool) -> None:
        Model.__init__(self)
        self.cfg = cfg
        self.standardize = PixelStandardizer(cfg.image[0])
        own = dict(cfg.options)
        self.net = contract.build(cfg.family, cfg.image, cfg.latent_dim, cfg.dropout, own, vae)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.decode(z)

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.net.parameters())


class OwnAutoencoder(_Own, ConvAutoencoder):
    """The user's autoencoder, trained on mean squared reconstruction error."""

    def __init__(self, cfg: ModelConfig) -> None:
        self._hold(cfg, vae=False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.encode(self.standardize(x))


class OwnVAE(_Own, ConvVAE):
    """The user's VAE: its posterior and decoder under vae-tune's ELBO."""

    def __init__(self, cfg: ModelConfig) -> None:
        if cfg.likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"model.likelihood {cfg.likelihood!r} is resolved before training")
        self._hold(cfg, vae=True)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.net.posterior(self.standardize(x))
        return mu, logvar

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        return torch.logit(self.decode(z).clamp(EPS, 1 - EPS))


OWN: dict[str, type[OwnAutoencoder] | type[OwnVAE]] = {"ae": OwnAutoencoder, "vae": OwnVAE}


def own_family(model: nn.Module) -> str | None:
    """The user's model inside `model` (itself, a classifier's encoder, a member's), if any."""
    own = (m for m in model.modules() if isinstance(m, OwnAutoencoder | OwnVAE))
    return next((m.cfg.family for m in own), None)


def build_autoencoder(stage: str, cfg: ModelConfig) -> Autoencoder:
    """The stage's autoencoder for `cfg`: built in, or the user's own (`model.family`)."""
    if contract.is_own(cfg.family):
        return OWN[stage](cfg)
    return build_model(stage, cfg)
