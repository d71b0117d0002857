"""The models: conv AE and VAE (shapes, output range, ELBO terms) and the MLP head."""

from __future__ import annotations

import pytest
import torch

from vae_tune.errors import ConfigError
from vae_tune.models.config import HeadConfig, ModelConfig, TrainConfig
from vae_tune.models.nets import Classifier, Ensemble, MLPHead, PixelCNN, build_model
from vae_tune.models.train import make_optimizer


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
        (1, 8, 4, 2),
        (8, 16, 4, 2),
        (16, 32, 3, 2),
    ]
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


@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_vae_elbo_terms(likelihood: str) -> None:
    torch.manual_seed(0)
    model = build_model("vae", ModelConfig(latent_dim=6, likelihood=likelihood, beta=0.5))
    x = torch.rand(8, 1, 28, 28)
    terms = model.loss_terms(x)
    assert set(terms) == {"loss", "recon", "kl", "neg_elbo", "mse"}
    assert all(torch.isfinite(v) for v in terms.values())
    assert terms["kl"] >= 0
    assert torch.allclose(terms["neg_elbo"], terms["recon"] + terms["kl"])
    assert torch.allclose(terms["loss"], terms["recon"] + 0.5 * terms["kl"])
    assert model.encode(x).shape == (8, 6)
    assert model.sample(3).shape == (3, 1, 28, 28)


def test_vae_kl_is_zero_exactly_at_the_prior() -> None:
    model = build_model("vae", ModelConfig(latent_dim=4))
    last = model.encoder[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)  # mean 0, log-variance 0: q(z|x) = N(0, I)
    assert model.loss_terms(torch.rand(4, 1, 28, 28))["kl"].item() == pytest.approx(0.0, abs=1e-6)


def test_bernoulli_recon_is_cross_entropy_in_nats() -> None:
    torch.manual_seed(0)
    model = build_model("vae", ModelConfig(latent_dim=4, likelihood="bernoulli"))
    x = torch.ones(2, 1, 28, 28)  # binarizes to all ones whatever the draw
    terms = model.loss_terms(x)
    # -log p(x|z) of 784 pixels, each predicted near 0.5 by an untrained decoder: ~784 * ln 2.
    assert 0.5 * 784 * 0.693 < terms["recon"].item() < 2 * 784 * 0.693


def test_mlp_head_standardizes_and_classifies() -> None:
    head = MLPHead(5, HeadConfig(hidden1=16, hidden2=8, dropout=0.0), n_classes=10)
    z = torch.randn(32, 5) * 100 + 50
    head.standardize_with(z)
    assert torch.allclose(head.input_mean, z.mean(0))
    logits = head(z)
    assert logits.shape == (32, 10)
    terms = head.loss_terms(z, torch.randint(0, 10, (32,)))
    assert set(terms) == {"loss", "accuracy"} and 0 <= terms["accuracy"] <= 1


def test_finetuned_classifier_trains_the_encoder_at_its_own_rate() -> None:
    ae = build_model("ae", ModelConfig(latent_dim=4))
    model = Classifier(ae, MLPHead(4, HeadConfig()))
    optimizer = make_optimizer(model, TrainConfig(lr=1e-3, encoder_lr=1e-5))
    encoder_group, head_group = optimizer.param_groups
    assert encoder_group["lr"] == 1e-5 and head_group["lr"] == 1e-3
    assert len(encoder_group["params"]) == len(list(ae.encoder.parameters()))
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_an_ensemble_averages_its_members_probabilities() -> None:
    torch.manual_seed(0)
    members = [
        Classifier(build_model("ae", ModelConfig(latent_dim=4)), MLPHead(4, HeadConfig()))
        for _ in range(2)
    ]
    ensemble = Ensemble(members).eval()
    x = torch.rand(5, 1, 28, 28)
    with torch.no_grad():
        mean = (members[0](x).softmax(1) + members[1](x).softmax(1)) / 2
        assert torch.allclose(ensemble(x).softmax(1), mean, atol=1e-6)
        assert torch.allclose(ensemble(x).exp().sum(1), torch.ones(5), atol=1e-5)
        mirrored = Ensemble(members[:1], mirror=True).eval()
        views = (members[0](x).softmax(1) + members[0](x.flip(-1)).softmax(1)) / 2
        assert torch.allclose(mirrored(x).softmax(1), views, atol=1e-6)
    with pytest.raises(ValueError, match="two classifiers or more, or mirrors"):
        Ensemble(members[:1])


def test_batchnorm_adds_a_norm_after_each_hidden_conv() -> None:
    model = build_model("vae", ModelConfig(latent_dim=8, batchnorm=True))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert [n.num_features for n in norms] == [8, 16, 32, 16, 8]  # encoder, then decoder
    assert model.loss_terms(torch.rand(4, 1, 28, 28))["loss"].isfinite()
    plain = build_model("vae", ModelConfig(latent_dim=8))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())


@pytest.mark.parametrize("stage", ["ae", "vae"])
@pytest.mark.parametrize("hidden2", [0, 64])
def test_fully_connected_family_shapes_and_finite_losses(stage: str, hidden2: int) -> None:
    cfg = ModelConfig(
        family="mlp", latent_dim=6, hidden=128, hidden2=hidden2, likelihood="bernoulli"
    )
    model = build_model(stage, cfg)
    assert not any(
        isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d) for m in model.modules()
    )
    widths = [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)]
    out = 6 if stage == "ae" else 12  # a VAE's encoder gives mean and log-variance
    assert widths == ([128, 64, out] if hidden2 else [128, out])
    x = torch.rand(5, 1, 28, 28)
    assert model.encode(x).shape == (5, 6)
    x_hat = model(x)
    assert x_hat.shape == x.shape and x_hat.min() >= 0 and x_hat.max() <= 1
    terms = model.loss_terms(x)
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_family_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"model\.family"):
        ModelConfig(family="transformer")


def test_pixel_cnn_is_two_conv_pool_blocks_and_a_hidden_layer() -> None:
    model = PixelCNN(ModelConfig(channels=(6, 12, 1), hidden=32, dropout=0.2))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0]) for c in convs] == [
        (1, 6, 5),
        (6, 12, 5),
    ]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == 2
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    assert model(x).shape == (8, 10)
    terms = model.loss_terms(x, y)
    assert torch.isfinite(terms["loss"]) and 0 <= terms["accuracy"] <= 1
    terms["loss"].backward()


def test_linear_head_is_logistic_regression() -> None:
    head = MLPHead(16, HeadConfig(family="linear"))
    [layer] = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert (layer.in_features, layer.out_features) == (16, 10)
    z, y = torch.randn(8, 16), torch.randint(0, 10, (8,))
    assert torch.isfinite(head.loss_terms(z, y)["loss"])
