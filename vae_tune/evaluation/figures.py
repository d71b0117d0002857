"""The one test evaluation of a promoted model: metrics, pictures and baselines.

An autoencoder is scored by its own loss terms on the test split, with pictures of what it does
(reconstructions, interpolation, latent projections; prior samples for a VAE; the 2-D latent
space when it has two dimensions) and, for a VAE, density baselines. A classifier is scored by
accuracy, macro-F1, per-class F1 and its confusion matrix. Nothing here logs: the caller does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, f1_score
from torch import nn

from vae_tune.evaluation import plots
from vae_tune.evaluation.density import density_baselines
from vae_tune.models.nets import Autoencoder, ConvVAE
from vae_tune.models.train import encode, evaluate, predict


@dataclass
class TestEvaluation:
    metrics: dict[str, float]
    figures: dict[str, Figure] = field(default_factory=dict)  # plots/NAME.png
    texts: dict[str, str] = field(default_factory=dict)  # artifact file -> text
    per_class_f1: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)
    density: dict[str, dict[str, float]] = field(default_factory=dict)


def evaluate_autoencoder(
    model: Autoencoder,
    train_x: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    classes: tuple[str, ...],
) -> TestEvaluation:
    result = TestEvaluation({f"test_{k}": v for k, v in evaluate(model, (test_x,)).items()})
    latent_dim = model.cfg.latent_dim
    if isinstance(model, ConvVAE):  # PPCA and a mixture at d = 2 and its own d
        result.density = density_baselines(train_x, test_x, [2, latent_dim])
        for name, scores in result.density.items():
            result.metrics |= {f"test_{name.replace('-', '')}_{k}": v for k, v in scores.items()}
    result.figures = autoencoder_figures(model, test_x, test_y, classes)
    return result


@torch.no_grad()
def autoencoder_figures(
    model: Autoencoder, test_x: torch.Tensor, test_y: torch.Tensor, classes: tuple[str, ...]
) -> dict[str, Figure]:
    model.eval()
    shown = test_x[:10]
    figures = {
        "reconstructions.png": plots.image_rows(
            {"test image": shown, "reconstruction": model(shown)},
            "Test images and their reconstructions",
        ),
        "interpolation.png": plots.image_rows(
            {"decoded": _interpolate(model, test_x[0], test_x[1])},
            "Decoded latents between two test images",
        ),
        "latent_projection.png": plots.latent_projections(
            encode(model, test_x[:1000]), test_y[:1000], classes
        ),
    }
    if isinstance(model, ConvVAE):
        torch.manual_seed(0)
        figures["prior_samples.png"] = plots.image_grid(
            model.sample(32), "Samples decoded from the prior N(0, I)"
        )
    if model.cfg.latent_dim == 2:
        figures["latent_scatter.png"] = plots.latent_scatter(encode(model, test_x), test_y, classes)
        grid = plots.latent_grid().to(test_x.device)
        figures["latent_grid.png"] = plots.image_grid(
            model.decode(grid),
            "Decoded latents over [-2, 2]^2 (z1 across, z2 down)",
            columns=int(len(grid) ** 0.5),
        )
    return figures


def evaluate_classifier(
    classifier: nn.Module, test_x: torch.Tensor, test_y: torch.Tensor, classes: tuple[str, ...]
) -> TestEvaluation:
    """Accuracy, macro-F1, per-class F1 and the confusion matrix."""
    y_true, y_pred = test_y.cpu().numpy(), predict(classifier, test_x).cpu().numpy()
    per_class = f1_score(y_true, y_pred, average=None, labels=range(len(classes)))
    result = TestEvaluation(
        {
            "test_accuracy": float(np.mean(y_true == y_pred)),
            "test_macro_f1": float(np.mean(per_class)),
        }
    )
    result.per_class_f1 = {name: float(f) for name, f in zip(classes, per_class, strict=True)}
    matrix = confusion_matrix(y_true, y_pred, labels=range(len(classes)))
    title = f"Test confusion matrix (accuracy {result.metrics['test_accuracy']:.4f})"
    result.figures["confusion_matrix.png"] = plots.confusion_matrix_figure(matrix, classes, title)
    result.texts["per_class_f1.json"] = json.dumps(result.per_class_f1, indent=2)
    return result


def _interpolate(
    model: Autoencoder, a: torch.Tensor, b: torch.Tensor, steps: int = 10
) -> torch.Tensor:
    za, zb = model.encode(a[None]), model.encode(b[None])
    weights = torch.linspace(0, 1, steps, device=za.device)[:, None]
    return model.decode((1 - weights) * za + weights * zb)
