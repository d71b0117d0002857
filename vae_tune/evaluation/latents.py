"""What a VAE's latent space holds, measured as the field measures it.

- The KL of each latent dimension and the active units: dimensions whose posterior mean varies
  across images, Cov_x(E_q[z|x]) > 0.01 (Burda et al. 2016). A collapsed dimension carries no
  information, however small the total KL looks.
- A linear probe: logistic regression on the latents of a fixed subset of the training split,
  scored on the validation split; how usable the representation is, not how good the pictures.
- The importance-weighted bound (IWAE, Burda et al.): log p(x) >= E[log 1/k sum_i w_i], with
  w_i = p(x|z_i) p(z_i) / q(z_i|x); k = 1 is the ELBO, and the bound tightens as k grows.
  Computed in batches with log-sum-exp, so no weight overflows.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vae_tune.evaluation.baselines import fit_quietly, latent_logistic_regression
from vae_tune.models.nets import Autoencoder, ConvVAE
from vae_tune.models.train import EVAL_BATCH, encode

PROBE = "val_probe_accuracy"  # the metric a probe objective reports each epoch
ACTIVE_THRESHOLD = 0.01  # Burda et al.: variance of the posterior mean across images
PROBE_IMAGES = 5000  # training images the probe is fitted on
IWAE_BATCH = 8192  # images x samples decoded at once
# Importance samples per test image at promotion: the bound tightens with k, the cost grows
# with it. With 100, a promotion's whole test evaluation on MNIST (IWAE, density baselines)
# took 95 s after 449 s of retraining (2 CPU cores).
IWAE_K = 100


@torch.no_grad()
def posterior_stats(model: ConvVAE, images: torch.Tensor) -> tuple[list[float], int]:
    """The KL of each latent dimension (nats, averaged over images) and the active units."""
    model.eval()
    means, kls = [], []
    for start in range(0, len(images), EVAL_BATCH):
        mu, logvar = model.posterior(images[start : start + EVAL_BATCH])
        means.append(mu)
        kls.append(0.5 * (mu**2 + logvar.exp() - 1.0 - logvar))
    mu_all, kl_all = torch.cat(means), torch.cat(kls)
    active = int((mu_all.var(0) > ACTIVE_THRESHOLD).sum())
    return kl_all.mean(0).tolist(), active


def probe_subset(n_train: int, seed: int = 0) -> torch.Tensor:
    """The fixed training images the probe is fitted on: the same for every trial."""
    order = np.random.default_rng(seed).permutation(n_train)[:PROBE_IMAGES]
    return torch.from_numpy(np.sort(order))


def probe_accuracy(
    model: Autoencoder,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    seed: int = 0,
) -> float:
    """Validation accuracy of logistic regression on the standardized latents."""
    z_train, z_val = (encode(model, x).cpu().numpy() for x in (train[0], val[0]))
    regression = latent_logistic_regression(seed, max_iter=100)
    probe = fit_quietly(regression, z_train, train[1].cpu().numpy())
    return float(probe.score(z_val, val[1].cpu().numpy()))


@torch.no_grad()
def iwae_nll(model: ConvVAE, images: torch.Tensor, k: int, seed: int = 0) -> float:
    """The importance-weighted estimate of -log p(x), nats per image, with k samples each.
    Binarized images (bernoulli) are binarized once, with `seed`."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    model.eval()
    generator = torch.Generator(device=images.device).manual_seed(seed)
    batch = max(1, IWAE_BATCH // k)
    bounds = []
    for start in range(0, len(images), batch):
        x = model.target(images[start : start + batch], generator)
        weights = log_weights(model, x, k, generator)
        bounds.append(torch.logsumexp(weights, dim=1) - math.log(k))
    return -float(torch.cat(bounds).mean())


def log_weights(
    model: ConvVAE, target: torch.Tensor, k: int, generator: torch.Generator
) -> torch.Tensor:
    """log p(x|z) + log p(z) - log q(z|x) for k posterior samples of each image: (images, k)."""
    n, d = len(target), model.cfg.latent_dim
    mu, logvar = model.posterior(target)
    eps = torch.randn(n, k, d, generator=generator, device=target.device)
    z = mu[:, None] + torch.exp(0.5 * logvar)[:, None] * eps
    logits = model.logits(z.reshape(n * k, d))
    repeated = target.repeat_interleave(k, dim=0)
    log_px = model.log_likelihood(repeated, logits).reshape(n, k)
    log_2pi = math.log(2 * math.pi)
    log_pz = -0.5 * (z**2 + log_2pi).sum(-1)
    log_qz = -0.5 * (eps**2 + log_2pi + logvar[:, None]).sum(-1)
    return log_px + log_pz - log_qz
