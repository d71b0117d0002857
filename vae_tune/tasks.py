"""What a stage trains: the model for a trial's config and the tensors it learns from.

The trial loop in `study.py` is the same for every stage; a task supplies the rest. The head
task encodes the images once per study (frozen encoder), so a head trial trains on latents only;
the pixel task trains a CNN from scratch on images and labels.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from vae_tune.config import TrialConfig
from vae_tune.data import Splits
from vae_tune.models import Classifier, MLPHead, PixelCNN, build_model
from vae_tune.train import Tensors


@dataclass
class AutoencoderTask:
    """AE or VAE: images in, reconstructions out."""

    stage: str
    splits: Splits
    lineage: dict[str, str] = field(default_factory=dict)

    def build(self, config: TrialConfig) -> nn.Module:
        return build_model(self.stage, config.model)

    def data(self, config: TrialConfig) -> tuple[Tensors, Tensors]:
        return (self.splits.train_x,), (self.splits.val_x,)


@dataclass
class PixelTask:
    """A classifier trained from scratch on pixels: the pixel CNN."""

    splits: Splits
    lineage: dict[str, str] = field(default_factory=dict)
    stage: str = "cnn"

    def build(self, config: TrialConfig) -> nn.Module:
        return PixelCNN(config.model, len(self.splits.classes))

    def data(self, config: TrialConfig) -> tuple[Tensors, Tensors]:
        s = self.splits
        return (s.train_x, s.train_y), (s.val_x, s.val_y)


@dataclass
class HeadTask:
    """The MLP head on a trained encoder: frozen (on cached latents) or fine-tuned with it."""

    encoder: nn.Module  # an autoencoder with `encode`
    splits: Splits
    lineage: dict[str, str] = field(default_factory=dict)  # where the encoder came from
    stage: str = "mlp"
    _latents: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, init=False, repr=False)

    def build(self, config: TrialConfig) -> nn.Module:
        head = MLPHead(self.encoder.cfg.latent_dim, config.head, len(self.splits.classes))
        head.standardize_with(self.latents()[0])
        if config.head.mode == "frozen":
            return head
        return Classifier(copy.deepcopy(self.encoder), head)  # each trial tunes its own copy

    def data(self, config: TrialConfig) -> tuple[Tensors, Tensors]:
        s = self.splits
        if config.head.mode == "frozen":
            train_z, val_z = self.latents()
            return (train_z, s.train_y), (val_z, s.val_y)
        return (s.train_x, s.train_y), (s.val_x, s.val_y)

    def latents(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Train and validation latents, computed once per study."""
        if self._latents is None:
            self._latents = (encode(self.encoder, self.splits.train_x),
                             encode(self.encoder, self.splits.val_x))  # fmt: skip
        return self._latents


@torch.no_grad()  # not inference_mode: the latents are inputs of head training later
def encode(model: nn.Module, images: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    model.eval()
    if len(images) == 0:
        return images.new_zeros(0, model.cfg.latent_dim)
    device = next(model.parameters()).device
    parts = [
        model.encode(images[i : i + batch_size].to(device))
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(parts).to(images.device)


def classifier_for(task: HeadTask | PixelTask, model: nn.Module) -> nn.Module:
    """Images in, class scores out: a frozen head is put behind its task's encoder."""
    if isinstance(task, HeadTask) and not isinstance(model, Classifier):
        return Classifier(task.encoder, model)
    return model


@torch.no_grad()
def predict(classifier: nn.Module, images: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """The predicted class of each image, in eval mode, a batch at a time."""
    classifier.eval()
    return torch.cat(
        [
            classifier(images[i : i + batch_size]).argmax(1)
            for i in range(0, len(images), batch_size)
        ]
    )


Task = AutoencoderTask | HeadTask | PixelTask
