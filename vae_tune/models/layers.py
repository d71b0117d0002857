"""The layers of the autoencoders: conv or fully connected encoders and their mirror-image
decoders, at any image size the models take. Plain torch; a config in, layers out.

`model.family: conv` (the default): conv C->c1 k4 s2 p1, conv c1->c2 k4 s2 p1, conv c2->c3 k3 s2
(28 -> 14 -> 7 -> 3; 32 -> 16 -> 8 -> 3; 64 -> 32 -> 16 -> 7), linear -> hidden -> latent; the
decoder mirrors it, back to the exact image size. `model.batchnorm` adds batch norm after each
hidden conv. `model.family: mlp`: the fully connected encoder of Kingma and Welling, C*H*W ->
hidden [-> hidden2] -> latent, and its mirror image as decoder. Dropout sits in the linear
layers.
"""

from __future__ import annotations

import math

from torch import nn

from vae_tune.models.config import ModelConfig


def norm(cfg: ModelConfig, channels: int) -> list[nn.Module]:
    """Batch norm after a conv layer when `model.batchnorm` is on: faster, steadier training.
    Nothing otherwise, so the layer indices (and saved weights) of plain models stay as they were.
    """
    return [nn.BatchNorm2d(channels)] if cfg.batchnorm else []


def _conv_sides(side: int) -> tuple[int, int, int]:
    """A side's length after each of the encoder's three convs (28 -> 14 -> 7 -> 3)."""
    s1 = side // 2  # k4 s2 p1
    s2 = s1 // 2  # k4 s2 p1
    return s1, s2, (s2 - 3) // 2 + 1  # k3 s2


def identity_like(layers: nn.Sequential) -> nn.Sequential:
    """Each conv's first filters, one per input channel, start as a Dirac delta: the layer
    first passes its input through (subsampled), the others keep their random start. The
    initialisation of airbench (CIFAR-10 to 94 % in seconds): signals and gradients flow
    through every layer from the first step."""
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            nn.init.dirac_(layer.weight[: layer.in_channels])
    return layers


def conv_encoder(cfg: ModelConfig, out_features: int) -> nn.Sequential:
    c1, c2, c3 = cfg.channels
    channels, height, width = cfg.image
    last = _conv_sides(height)[2] * _conv_sides(width)[2]
    layers = nn.Sequential(
        nn.Conv2d(channels, c1, 4, stride=2, padding=1),
        *norm(cfg, c1),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 4, stride=2, padding=1),
        *norm(cfg, c2),
        nn.ReLU(),
        nn.Conv2d(c2, c3, 3, stride=2),
        *norm(cfg, c3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(c3 * last, cfg.hidden),
        nn.ReLU(),
        nn.Dropout(cfg.dropout),
        nn.Linear(cfg.hidden, out_features),
    )
    return identity_like(layers) if cfg.init == "dirac" else layers


def conv_decoder(cfg: ModelConfig) -> nn.Sequential:
    """Latent -> pixel logits (the sigmoid is applied by the model, BCE wants logits). Each
    transposed conv adds the output padding that lands on the encoder's side lengths
    exactly (none at 28 x 28, so the layers of a 28 x 28 model are the ones they always were)."""
    c1, c2, c3 = cfg.channels
    channels, height, width = cfg.image
    (h1, h2, h3), (w1, w2, w3) = _conv_sides(height), _conv_sides(width)
    return nn.Sequential(
        nn.Linear(cfg.latent_dim, cfg.hidden),
        nn.ReLU(),
        nn.Dropout(cfg.dropout),
        nn.Linear(cfg.hidden, c3 * h3 * w3),
        nn.ReLU(),
        nn.Unflatten(1, (c3, h3, w3)),
        nn.ConvTranspose2d(c3, c2, 3, stride=2, output_padding=(h2 - 2 * h3 - 1, w2 - 2 * w3 - 1)),
        *norm(cfg, c2),
        nn.ReLU(),
        nn.ConvTranspose2d(
            c2, c1, 4, stride=2, padding=1, output_padding=(h1 - 2 * h2, w1 - 2 * w2)
        ),
        *norm(cfg, c1),
        nn.ReLU(),
        nn.ConvTranspose2d(
            c1, channels, 4, stride=2, padding=1, output_padding=(height - 2 * h1, width - 2 * w1)
        ),
    )


def mlp_encoder(cfg: ModelConfig, out_features: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(cfg.image)
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
    return nn.Sequential(
        *layers, nn.Linear(width, math.prod(cfg.image)), nn.Unflatten(1, cfg.image)
    )


def _mlp_widths(cfg: ModelConfig) -> list[int]:
    return [cfg.hidden, cfg.hidden2] if cfg.hidden2 else [cfg.hidden]


def encoder_for(cfg: ModelConfig, out_features: int) -> nn.Sequential:
    return (
        mlp_encoder(cfg, out_features) if cfg.family == "mlp" else conv_encoder(cfg, out_features)
    )


def decoder_for(cfg: ModelConfig) -> nn.Sequential:
    return mlp_decoder(cfg) if cfg.family == "mlp" else conv_decoder(cfg)
