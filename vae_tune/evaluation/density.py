"""Density baselines that put a VAE's numbers in context: probabilistic PCA and a Gaussian
mixture (scikit-learn), fitted on training images and scored on held-out ones.

Each gives the mean log-likelihood per image in nats and the reconstruction MSE. Both are
continuous densities over pixel values in [0, 1], like a gaussian VAE's ELBO; a bernoulli VAE's
ELBO is over binarized pixels, a different scale, so the report shows the units beside them.
PPCA with d components reconstructs through its d-dimensional latent; the mixture with d
components (diagonal covariances) through the mean of each image's most likely component.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from vae_tune.evaluation.baselines import capped_iterations

MIXTURE_TRAIN_IMAGES = 10_000  # EM over 784 dimensions: a subset keeps a fit under a minute


def density_baselines(
    train_x: torch.Tensor, test_x: torch.Tensor, dims: list[int], seed: int = 0
) -> dict[str, dict[str, float]]:
    """`{"ppca-2": {"log_likelihood": ..., "mse": ...}, "gmm-2": {...}, ...}` for each dim."""
    train, test = _flat(train_x), _flat(test_x)
    mixture_train = np.random.default_rng(seed).permutation(len(train))[:MIXTURE_TRAIN_IMAGES]
    results = {}
    for dim in sorted(set(dims)):
        results[f"ppca-{dim}"] = ppca(train, test, dim, seed)
        results[f"gmm-{dim}"] = gaussian_mixture(train[mixture_train], test, dim, seed)
    return results


def ppca(train: np.ndarray, test: np.ndarray, dim: int, seed: int = 0) -> dict[str, float]:
    model = PCA(dim, random_state=seed).fit(train)
    reconstruction = model.inverse_transform(model.transform(test))
    return {
        "log_likelihood": float(model.score(test)),  # mean over images, nats
        "mse": float(np.mean((reconstruction - test) ** 2)),
    }


def gaussian_mixture(
    train: np.ndarray, test: np.ndarray, components: int, seed: int = 0
) -> dict[str, float]:
    # reg_covar: border pixels are (almost) always 0, and a zero variance is an infinite density.
    model = GaussianMixture(
        components, covariance_type="diag", reg_covar=1e-3, max_iter=50, random_state=seed
    )
    # 50 EM steps is a deliberate cap (a baseline, not the product); on the default threads,
    # which EM uses well: 3.5 s against 4.6 s on one for 33 components over 10,000 images.
    with capped_iterations():
        model.fit(train)
    reconstruction = model.means_[model.predict(test)]
    return {
        "log_likelihood": float(model.score(test)),
        "mse": float(np.mean((reconstruction - test) ** 2)),
    }


def _flat(images: torch.Tensor) -> np.ndarray:
    return images.detach().cpu().reshape(len(images), -1).double().numpy()
