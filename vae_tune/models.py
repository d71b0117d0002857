"""The models: AE, VAE and the MLP head; a config in, layers out, named loss terms.

`model.family: conv` (the default): conv 1->c1 k4 s2 p1, conv c1->c2 k4 s2 p1, conv c2->c3 k3 s2
(28 -> 14 -> 7 -> 3), linear 9*c3 -> hidden -> latent; the decoder mirrors it (its output passes
through a sigmoid). `model.batchnorm` adds batch norm after each hidden conv.
`model.family: mlp`: the fully connected encoder of Kingma and Welling, 784 -> hidden
[-> hidden2] -> latent, and its mirror image as decoder. Dropout sits in the linear layers.
Each model's `loss_terms` returns `loss` (what is minimised) and the terms logged beside it.
Models know nothing of Optuna, MLflow, files or devices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vae_tune.config import HeadConfig, ModelConfig, TrainConfig


def _norm(cfg: ModelConfig, channels: int) -> list[nn.Module]:
    """Batch norm after a conv layer when `model.batchnorm` is on: faster, steadier training.
    Nothing otherwise, so the layer indices (and saved weights) of plain models stay as they were.
    """
    return [nn.BatchNorm2d(channels)] if cfg.batchnorm else []


def conv_encoder(cfg: ModelConfig, out_features: int) -> nn.Sequential:
    c1, c2, c3 = cfg.channels
    return nn.Sequential(
        nn.Conv2d(1, c1, 4, stride=2, padding=1),
        *_norm(cfg, c1),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 4, stride=2, padding=1),
        *_norm(cfg, c2),
        nn.ReLU(),
        nn.Conv2d(c2, c3, 3, stride=2),
        *_norm(cfg, c3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(c3 * 9, cfg.hidden),
        nn.ReLU(),
        nn.Dropout(cfg.dropout),
        nn.Linear(cfg.hidden, out_features),
    )


def conv_decoder(cfg: ModelConfig) -> nn.Sequential:
    """Latent -> pixel logits (the sigmoid is applied by the model, BCE wants logits)."""
    c1, c2, c3 = cfg.channels
    return nn.Sequential(
        nn.Linear(cfg.latent_dim, cfg.hidden),
        nn.ReLU(),
        nn.Dropout(cfg.dropout),
        nn.Linear(cfg.hidden, c3 * 9),
        nn.ReLU(),
        nn.Unflatten(1, (c3, 3, 3)),
        nn.ConvTranspose2d(c3, c2, 3, stride=2),
        *_norm(cfg, c2),
        nn.ReLU(),
        nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1),
        *_norm(cfg, c1),
        nn.ReLU(),
        nn.ConvTranspose2d(c1, 1, 4, stride=2, padding=1),
    )


def mlp_encoder(cfg: ModelConfig, out_features: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = 28 * 28
    for hidden in _mlp_widths(cfg):
        layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(cfg.dropout)]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, out_features))


def mlp_decoder(cfg: ModelConfig) -> nn.Sequential:
    """Latent -> pixel logits, the encoder's widths in reverse."""
    layers: list[nn.Module] = []
    width = cfg.latent_dim
    for hidden in reversed(_mlp_widths(cfg)):
        layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(cfg.dropout)]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, 28 * 28), nn.Unflatten(1, (1, 28, 28)))


def _mlp_widths(cfg: ModelConfig) -> list[int]:
    return [cfg.hidden, cfg.hidden2] if cfg.hidden2 else [cfg.hidden]


def encoder_for(cfg: ModelConfig, out_features: int) -> nn.Sequential:
    return (
        mlp_encoder(cfg, out_features) if cfg.family == "mlp" else conv_encoder(cfg, out_features)
    )


def decoder_for(cfg: ModelConfig) -> nn.Sequential:
    return mlp_decoder(cfg) if cfg.family == "mlp" else conv_decoder(cfg)


class Model(nn.Module):
    """What the training loop needs of a model: `loss_terms(*batch)`, named terms with the
    `loss` to minimise among them (each model takes its own batch: images, or images and
    labels)."""

    loss_terms: Callable[..., dict[str, torch.Tensor]]

    def param_groups(self, cfg: TrainConfig) -> Any:
        """What the optimizer updates: every parameter at `cfg.lr`, unless a model says else."""
        return self.parameters()


class Autoencoder(Model):
    """An encoder and a decoder over 28x28 images, `cfg.latent_dim` wide in between: what a
    head is trained on and what the pictures show."""

    cfg: ModelConfig
    encoder: nn.Sequential
    decoder: nn.Sequential

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


class ConvAutoencoder(Autoencoder):
    """Deterministic AE (conv, or fully connected) trained on mean squared reconstruction error.
    The class keeps its name for models already registered; `model.family` picks the layers."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder_for(cfg, cfg.latent_dim)
        self.decoder = decoder_for(cfg)

    def loss_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mse = F.mse_loss(self(x), x)
        return {"loss": mse, "mse": mse}


class ConvVAE(Autoencoder):
    """VAE (conv, or fully connected): the encoder outputs mean and log-variance; loss =
    negative ELBO (beta-weighted).

    Terms are in nats per image: `recon` (-log p(x|z)), `kl` (KL(q(z|x) || N(0, I))),
    `neg_elbo` = recon + kl. The bernoulli likelihood binarizes each batch afresh (dynamic
    binarization); the gaussian one has a fixed standard deviation `sigma`.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder_for(cfg, 2 * cfg.latent_dim)
        self.decoder = decoder_for(cfg)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean: the representation heads are trained on."""
        return self.posterior(x)[0]

    def sample(self, n: int) -> torch.Tensor:
        device = next(self.parameters()).device
        return self.decode(torch.randn(n, self.cfg.latent_dim, device=device))

    def target(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """What the likelihood scores: the images, or (bernoulli) a binarization of them."""
        if self.cfg.likelihood == "bernoulli":
            return torch.bernoulli(x, generator=generator)
        return x

    def log_likelihood(self, target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log p(x | z) per image, in nats, from the decoder's logits."""
        if self.cfg.likelihood == "bernoulli":
            log_p = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        else:
            var = self.cfg.sigma**2
            mean = torch.sigmoid(logits)
            log_p = -0.5 * (target - mean) ** 2 / var - 0.5 * math.log(2 * math.pi * var)
        return log_p.flatten(1).sum(1)

    def loss_terms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.posterior(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = self.decoder(z)
        recon = -self.log_likelihood(self.target(x), logits)
        kl = 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(1)
        return {
            "loss": (recon + self.cfg.beta * kl).mean(),
            "recon": recon.mean(),
            "kl": kl.mean(),
            "neg_elbo": (recon + kl).mean(),
            "mse": F.mse_loss(torch.sigmoid(logits), x),
        }


class MLPHead(Model):
    """latent -> hidden1 -> hidden2 -> classes, with ReLU and dropout; trained on latents.

    Latents are standardized first with fixed statistics of the training latents (buffers,
    saved with the model): autoencoder latents have arbitrary scales, which SGD handles badly.
    """

    input_mean: torch.Tensor
    input_std: torch.Tensor

    def __init__(self, in_features: int, cfg: HeadConfig, n_classes: int = 10) -> None:
        super().__init__()
        self.cfg, self.in_features, self.n_classes = cfg, in_features, n_classes
        self.register_buffer("input_mean", torch.zeros(in_features))
        self.register_buffer("input_std", torch.ones(in_features))
        if cfg.family == "linear":  # logistic regression on the standardized latents
            self.net = nn.Sequential(nn.Linear(in_features, n_classes))
            return
        self.net = nn.Sequential(
            nn.Linear(in_features, cfg.hidden1),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden1, cfg.hidden2),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden2, n_classes),
        )

    def standardize_with(self, latents: torch.Tensor) -> MLPHead:
        self.input_mean.copy_(latents.mean(0))
        self.input_std.copy_(latents.std(0).clamp_min(1e-6))
        return self

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net((z - self.input_mean) / self.input_std)

    def loss_terms(self, z: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return classification_terms(self(z), y)


class Classifier(Model):
    """An autoencoder's encoder and an MLP head, fine-tuned together on images."""

    def __init__(self, autoencoder: Autoencoder, head: MLPHead) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.autoencoder.encode(x))

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return classification_terms(self(x), y)

    def param_groups(self, cfg: TrainConfig) -> list[dict]:
        """The encoder learns at its own (smaller) rate; the decoder is not trained."""
        return [
            {"params": self.autoencoder.encoder.parameters(), "lr": cfg.encoder_lr},
            {"params": self.head.parameters()},
        ]


class PixelCNN(Model):
    """The reports' reference point, trained from scratch on pixels: two conv + max-pool
    blocks (k5, `model.channels[:2]` wide), then hidden -> classes with dropout."""

    def __init__(self, cfg: ModelConfig, n_classes: int = 10) -> None:
        super().__init__()
        self.cfg, self.n_classes = cfg, n_classes
        c1, c2 = cfg.channels[:2]
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 5, padding=2),
            *_norm(cfg, c1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2),
            *_norm(cfg, c2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * 7 * 7, cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return classification_terms(self(x), y)


def classification_terms(logits: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    loss = F.cross_entropy(logits, y)
    return {"loss": loss, "accuracy": (logits.argmax(1) == y).float().mean()}


AUTOENCODERS: dict[str, type[ConvAutoencoder] | type[ConvVAE]] = {
    "ae": ConvAutoencoder,
    "vae": ConvVAE,
}


def build_model(stage: str, cfg: ModelConfig) -> Autoencoder:
    return AUTOENCODERS[stage](cfg)
