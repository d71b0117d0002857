"""A ResNet-style conv autoencoder and VAE that follow vae-tune's model contract.

vae-tune calls `ResNetAE(image=(C, H, W), latent_dim=..., dropout=..., width=..., blocks=...)`:
`image`, `latent_dim` and `dropout` are its own; `width` and `blocks` are this model's keys, which
a space sets or searches as `model.width` and `model.blocks` (their annotations are their types).
The module gives `encode(x) -> z` and `decode(z) -> images in [0, 1]`; the VAE adds
`posterior(x) -> (mu, logvar)`. vae-tune does the rest: training, losses, pruning, tracking,
pictures, promotion and the pt2 export.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Residual(nn.Module):
    """x + conv(relu(conv(x))), at the same width and size."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.BatchNorm2d(width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


def _stage(c_in: int, c_out: int, blocks: int, down: bool) -> list[nn.Module]:
    """A stride-2 conv (or an upsampling one), then `blocks` residual blocks."""
    if down:
        resize: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)]
    else:
        resize = [nn.Upsample(scale_factor=2), nn.Conv2d(c_in, c_out, 3, padding=1)]
    return [*resize, nn.BatchNorm2d(c_out), nn.ReLU(), *(Residual(c_out) for _ in range(blocks))]


class ResNetAE(nn.Module):
    """Images -> two downsampling stages of residual blocks -> a linear bottleneck, and back."""

    OUTPUTS = 1  # encoder outputs per latent dimension: a VAE's are a mean and a log-variance

    def __init__(
        self,
        image: tuple[int, int, int],
        latent_dim: int,
        dropout: float = 0.0,
        width: int = 16,
        blocks: int = 1,
    ) -> None:
        super().__init__()
        channels, height, wide = image
        self.size = (height, wide)
        self.grid = (math.ceil(height / 4), math.ceil(wide / 4))
        flat = 2 * width * self.grid[0] * self.grid[1]
        self.encoder = nn.Sequential(
            *_stage(channels, width, blocks, down=True),
            *_stage(width, 2 * width, blocks, down=True),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(flat, self.OUTPUTS * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, flat),
            nn.Unflatten(1, (2 * width, *self.grid)),
            *_stage(2 * width, width, blocks, down=False),
            *_stage(width, width, blocks, down=False),
            nn.Conv2d(width, channels, 3, padding=1),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] (the contract), cropped to the image's own size."""
        height, width = self.size
        return torch.sigmoid(self.decoder(z)[..., :height, :width])


class ResNetVAE(ResNetAE):
    """The same layers, the encoder giving a mean and a log-variance per latent dimension."""

    OUTPUTS = 2

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]
