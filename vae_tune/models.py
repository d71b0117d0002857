"""The convolutional autoencoder: a config in, layers out, and its own named loss terms.

Encoder: conv 1->c1 k4 s2 p1, conv c1->c2 k4 s2 p1, conv c2->c3 k3 s2 (28 -> 14 -> 7 -> 3),
linear 9*c3 -> hidden -> latent; the decoder mirrors it and ends in a sigmoid. Dropout sits in
the linear layers. Models know nothing of Optuna, MLflow, files or devices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vae_tune.config import ModelConfig


def conv_encoder(cfg: ModelConfig, out_features: int) -> nn.Sequential:
    c1, c2, c3 = cfg.channels
    return nn.Sequential(
        nn.Conv2d(1, c1, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(c2, c3, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(c3 * 9, cfg.hidden),
        nn.ReLU(),
        nn.Dropout(cfg.dropout),
        nn.Linear(cfg.hidden, out_features),
    )


def conv_decoder(cfg: ModelConfig) -> nn.Sequential:
    c1, c2, c3 = cfg.channels
    return nn.Sequential(
        nn.Linear(cfg.latent_dim, cfg.hidden),
        nn.ReLU(),
        nn.Dropout(cfg.dropout),
        nn.Linear(cfg.hidden, c3 * 9),
        nn.ReLU(),
        nn.Unflatten(1, (c3, 3, 3)),
        nn.ConvTranspose2d(c3, c2, 3, stride=2),
        nn.ReLU(),
        nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(c1, 1, 4, stride=2, padding=1),
        nn.Sigmoid(),
    )


class ConvAutoencoder(nn.Module):
    """Deterministic conv AE trained on mean squared reconstruction error."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = conv_encoder(cfg, cfg.latent_dim)
        self.decoder = conv_decoder(cfg)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def loss_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """`loss` is what is minimised; the other terms are logged beside it."""
        mse = F.mse_loss(self(x), x)
        return {"loss": mse, "mse": mse}


MODELS = {"ae": ConvAutoencoder}


def build_model(stage: str, cfg: ModelConfig) -> nn.Module:
    return MODELS[stage](cfg)
