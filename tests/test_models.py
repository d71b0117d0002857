"""The conv autoencoder: shapes, output range, loss terms, configurable widths."""

from __future__ import annotations

import pytest
import torch

from vae_tune.config import ModelConfig
from vae_tune.errors import ConfigError
from vae_tune.models import build_model


@pytest.mark.parametrize("latent_dim", [2, 185])
def test_shapes_and_output_range(latent_dim: int) -> None:
    model = build_model("ae", ModelConfig(latent_dim=latent_dim))
    x = torch.rand(5, 1, 28, 28)
    z = model.encode(x)
    assert z.shape == (5, latent_dim)
    x_hat = model.decode(z)
    assert x_hat.shape == x.shape
    assert x_hat.min() >= 0 and x_hat.max() <= 1


def test_reference_architecture() -> None:
    model = build_model("ae", ModelConfig(latent_dim=16))
    convs = [m for m in model.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (1, 8, 4, 2), (8, 16, 4, 2), (16, 32, 3, 2)
    ]  # fmt: skip
    linears = [m for m in model.encoder if isinstance(m, torch.nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(288, 64), (64, 16)]


def test_channel_widths_are_configurable() -> None:
    model = build_model("ae", ModelConfig(latent_dim=8, channels=(4, 8, 12), hidden=32))
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    assert model.encoder[7].in_features == 12 * 9


def test_loss_terms_are_finite_and_backpropagate() -> None:
    model = build_model("ae", ModelConfig(latent_dim=8, dropout=0.2))
    x = torch.rand(4, 1, 28, 28)
    terms = model.loss_terms(x)
    assert set(terms) == {"loss", "mse"}
    assert torch.isfinite(terms["loss"]) and terms["loss"] > 0
    model.eval()
    expected = torch.mean((model(x) - x) ** 2)
    assert torch.allclose(model.loss_terms(x)["mse"], expected)
    terms["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bad_model_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"model\.dropout"):
        ModelConfig(dropout=1.0)
    with pytest.raises(ConfigError, match=r"model\.channels"):
        ModelConfig(channels=(8, 16))
