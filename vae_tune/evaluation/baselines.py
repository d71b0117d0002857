"""Baselines that put a head's accuracy in context: logistic regression (scikit-learn) on the
encoder's latents, on PCA components of the same dimension, and on raw pixels.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

Estimator = TypeVar("Estimator", Pipeline, LogisticRegression)


def logistic_baselines(
    train_z: torch.Tensor,
    val_z: torch.Tensor,
    train_x: torch.Tensor,
    val_x: torch.Tensor,
    train_y: torch.Tensor,
    val_y: torch.Tensor,
    seed: int = 0,
) -> dict[str, float]:
    """Validation accuracy of each baseline, by name."""
    pixels_train, pixels_val = _flat(train_x), _flat(val_x)
    y_train, y_val = _numpy(train_y), _numpy(val_y)
    latent_dim = train_z.shape[1]
    models = {
        "logreg_latents": (latent_logistic_regression(seed), _numpy(train_z), _numpy(val_z)),
        "logreg_pca": (
            make_pipeline(PCA(latent_dim, random_state=seed), StandardScaler(), _logreg(seed)),
            pixels_train,
            pixels_val,
        ),
        "logreg_pixels": (_logreg(seed), pixels_train, pixels_val),
    }
    scores = {}
    for name, (model, x_train, x_val) in models.items():
        fit_quietly(model, x_train, y_train)
        scores[name] = float(np.mean(model.predict(x_val) == y_val))
    return scores


def latent_logistic_regression(seed: int = 0, max_iter: int = 300) -> Pipeline:
    """Logistic regression on standardized latents (their scales are arbitrary)."""
    return make_pipeline(StandardScaler(), _logreg(seed, max_iter))


@contextmanager
def capped_iterations() -> Iterator[None]:
    """No ConvergenceWarning inside: our fits stop at a deliberate iteration cap."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def fit_quietly(model: Estimator, x: np.ndarray, y: np.ndarray) -> Estimator:
    """`model.fit(x, y)` without lbfgs's convergence warnings, on one BLAS/OpenMP thread.

    One thread because torch's thread pool, awake after training, and scikit-learn's threads
    contend for the same cores. Inside a trial on a quiet 2-core machine, the AE's probe took
    2.1 s on the default threads and 1.0 s on one (benchmarks/trial_extras.py); on 2 busy
    cores a 5,000-image fit took 1.1 s against 0.04 s. Alone, a fit is as fast on one thread.
    """
    # lbfgs on raw pixels stops at max_iter before its tolerance: the accuracy is stable.
    with capped_iterations(), threadpool_limits(limits=1):
        return model.fit(x, y)


def _logreg(seed: int, max_iter: int = 300) -> LogisticRegression:
    return LogisticRegression(max_iter=max_iter, random_state=seed)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _flat(images: torch.Tensor) -> np.ndarray:
    return _numpy(images).reshape(len(images), -1)
