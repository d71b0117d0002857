"""The models: AE, VAE, the MLP head and the pixel CNN; a config in, layers out, named loss
terms.

Every model takes (C, H, W) images in [0, 1] (`model.image`, set from the data: 1 or 3 channels,
sides of 12 pixels or more) and standardizes them per channel with its training images' stats.
The autoencoders' layers are in `layers.py`; their decoders' outputs pass through a sigmoid.
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

from vae_tune.models.config import HeadConfig, ModelConfig, TrainConfig
from vae_tune.models.graph import GraphEncoder
from vae_tune.models.layers import decoder_for, encoder_for, norm


class Model(nn.Module):
    """What the training loop needs of a model: `loss_terms(*batch)`, named terms with the
    `loss` to minimise among them (each model takes its own batch: images, or images and
    labels)."""

    loss_terms: Callable[..., dict[str, torch.Tensor]]

    def param_groups(self, cfg: TrainConfig) -> Any:
        """What the optimizer updates: every parameter at `cfg.lr`, unless a model says else."""
        return self.parameters()


class PixelStandardizer(nn.Module):
    """Per-channel mean and standard deviation of the training images (buffers, saved with
    the model): inputs are standardized with them, so a model takes pixels in [0, 1] whatever
    the dataset's brightness, and a served model needs no preprocessing."""

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.zeros(1, channels, 1, 1))
        self.register_buffer("pixel_std", torch.ones(1, channels, 1, 1))

    def fit(self, images: torch.Tensor) -> None:
        # Reduced in place over (N, H, W): no transposed copy of the training set per trial.
        x = images.float()  # the images themselves when they are float32, as loaded
        self.pixel_mean.copy_(x.mean((0, 2, 3)).view_as(self.pixel_mean))
        self.pixel_std.copy_(x.std((0, 2, 3)).clamp_min(1e-3).view_as(self.pixel_std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.pixel_mean) / self.pixel_std


class Autoencoder(Model):
    """An encoder and a decoder over (C, H, W) images, `cfg.latent_dim` wide in between: what
    a head is trained on and what the pictures show."""

    cfg: ModelConfig
    encoder: nn.Sequential
    decoder: nn.Sequential
    standardize: PixelStandardizer

    def standardize_with(self, images: torch.Tensor) -> Autoencoder:
        self.standardize.fit(images)
        return self

    @property
    def latent_dim(self) -> int:
        return self.cfg.latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.standardize(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def encoder_parameters(self) -> list[nn.Parameter]:
        """What a fine-tuned classifier trains of it (at train.encoder_lr)."""
        return list(self.encoder.parameters())


class ConvAutoencoder(Autoencoder):
    """Deterministic AE (conv, or fully connected) trained on mean squared reconstruction error.
    The class keeps its name for models already registered; `model.family` picks the layers."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.standardize = PixelStandardizer(cfg.image[0])
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
        if cfg.likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"model.likelihood {cfg.likelihood!r} is resolved before training")
        self.cfg = cfg
        self.standardize = PixelStandardizer(cfg.image[0])
        self.encoder = encoder_for(cfg, 2 * cfg.latent_dim)
        self.decoder = decoder_for(cfg)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(self.standardize(x)).chunk(2, dim=1)
        return mu, logvar

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean: the representation heads are trained on."""
        return self.posterior(x)[0]

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's output before its sigmoid: what the likelihood scores."""
        return self.decoder(z)

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
        logits = self.logits(z)
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
    `label_smoothing` (train.label_smoothing) smooths the labels of its training loss, and of
    a Classifier's it is the head of.
    """

    input_mean: torch.Tensor
    input_std: torch.Tensor

    def __init__(
        self, in_features: int, cfg: HeadConfig, n_classes: int = 10, label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        self.cfg, self.in_features, self.n_classes = cfg, in_features, n_classes
        self.label_smoothing = label_smoothing
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
        return classification_terms(self(z), y, self.label_smoothing if self.training else 0.0)


class Classifier(Model):
    """An autoencoder's encoder and an MLP head, fine-tuned together on images."""

    def __init__(self, autoencoder: Autoencoder | GraphEncoder, head: MLPHead) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.autoencoder.encode(x))

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        smoothing = self.head.label_smoothing if self.training else 0.0
        return classification_terms(self(x), y, smoothing)

    def param_groups(self, cfg: TrainConfig) -> list[dict]:
        """The encoder learns at its own (smaller) rate; the decoder is not trained."""
        return [
            {"params": self.autoencoder.encoder_parameters(), "lr": cfg.encoder_lr},
            {"params": self.head.parameters()},
        ]


class Ensemble(Model):
    """Classifiers (one design trained with different seeds, or a study's best trials), their
    class probabilities averaged; with `mirror`, over each image and its mirror too (test-time
    augmentation, for classifiers trained on mirrored images). Its members take images (frozen
    heads are put behind their encoder first). The output is the log of that average: logits
    whose softmax is the averaged probabilities, so whatever reads a classifier's logits reads
    an ensemble's."""

    def __init__(self, members: list[Model], mirror: bool = False) -> None:
        super().__init__()
        if len(members) < 2 and not mirror:
            raise ValueError("an ensemble averages two classifiers or more, or mirrors")
        self.members = nn.ModuleList(members)
        self.mirror = mirror

    @property
    def models(self) -> list[Model]:
        """The members, typed as what they are (a ModuleList holds nn.Modules)."""
        return [member for member in self.members if isinstance(member, Model)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        views = [x, x.flip(-1)] if self.mirror else [x]
        log_p = torch.stack(
            [member(v).float().log_softmax(1) for member in self.members for v in views]
        )
        return torch.logsumexp(log_p, 0) - math.log(len(log_p))

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return classification_terms(self(x), y)


class PixelCNN(Model):
    """The reports' reference point, trained from scratch on pixels: two conv + max-pool
    blocks (k5, `model.channels[:2]` wide), then hidden -> classes with dropout."""

    def __init__(self, cfg: ModelConfig, n_classes: int = 10, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.cfg, self.n_classes = cfg, n_classes
        self.label_smoothing = label_smoothing  # of its training loss, as MLPHead's
        c1, c2 = cfg.channels[:2]
        channels, height, width = cfg.image
        self.standardize = PixelStandardizer(channels)
        self.net = nn.Sequential(
            nn.Conv2d(channels, c1, 5, padding=2),
            *norm(cfg, c1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2),
            *norm(cfg, c2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(c2 * (height // 4) * (width // 4), cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, n_classes),
        )

    def standardize_with(self, images: torch.Tensor) -> PixelCNN:
        self.standardize.fit(images)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.standardize(x))

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return classification_terms(self(x), y, self.label_smoothing if self.training else 0.0)


def classification_terms(
    logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0
) -> dict[str, torch.Tensor]:
    """Cross-entropy (`loss`) and accuracy. Classifiers smooth the labels only in training
    mode: `train_loss` is the smoothed loss that was minimised, while `val_loss` (evaluation
    runs in eval mode) stays the plain cross-entropy, comparable across smoothing values;
    accuracy, what studies select on, is the same either way."""
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    return {"loss": loss, "accuracy": (logits.argmax(1) == y).float().mean()}


AUTOENCODERS: dict[str, type[ConvAutoencoder] | type[ConvVAE]] = {
    "ae": ConvAutoencoder,
    "vae": ConvVAE,
}


def build_model(stage: str, cfg: ModelConfig) -> Autoencoder:
    return AUTOENCODERS[stage](cfg)
