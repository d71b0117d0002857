"""What a stage trains and how it is judged: the model for a config, the tensors it learns from,
its one test evaluation and its learning-curve error.

The trial loop, promotion and the learning curve are the same for every stage; a task supplies
the rest, so nothing downstream asks what kind of model it holds. The head task encodes the
images once per study (frozen encoder), so a frozen head trial trains on latents only.
`retrain` is the one way a config is trained outside a trial.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from vae_tune.data.splits import Splits
from vae_tune.evaluation.baselines import (
    fit_quietly,
    latent_logistic_regression,
    logistic_baselines,
)
from vae_tune.evaluation.calibrate import resolved
from vae_tune.evaluation.figures import TestEvaluation, evaluate_autoencoder, evaluate_classifier
from vae_tune.evaluation.latents import (
    PROBE,
    iwae_nll,
    posterior_stats,
    probe_accuracy,
    probe_subset,
)
from vae_tune.models.config import ModelConfig, TrialConfig
from vae_tune.models.factory import build_autoencoder
from vae_tune.models.graph import GraphEncoder
from vae_tune.models.nets import (
    Autoencoder,
    Classifier,
    ConvVAE,
    Ensemble,
    MLPHead,
    Model,
    PixelCNN,
)
from vae_tune.models.train import EpochCallback, EpochResult, Tensors, encode, fit, predict

Log = Callable[[str], None]
Lineage = dict[str, str]  # where a head's encoder came from: encoder.study, .trial, .run_id ...


@dataclass
class AutoencoderTask:
    """AE or VAE: images in, reconstructions out."""

    stage: str
    splits: Splits
    lineage: Lineage = field(default_factory=dict)
    _probe: torch.Tensor | None = field(default=None, init=False, repr=False)
    # How its learning curve scores it: as the reference reports did.
    curve_evaluation = "logistic regression on the latents"
    pictured = True  # each trial leaves a picture of its reconstructions

    def build(self, config: TrialConfig) -> Model:
        # train.label_smoothing: an autoencoder has no labels to smooth. Its stages' spaces
        # refuse the key (stages.py); set in Python, it is ignored here.
        model = build_autoencoder(self.stage, sized(config.model, self.splits))
        return model.standardize_with(self.splits.train_x)

    def data(self, config: TrialConfig) -> tuple[Tensors, Tensors]:
        return (self.splits.train_x,), (self.splits.val_x,)

    def evaluate_test(
        self, model: Model, test_x: torch.Tensor, test_y: torch.Tensor, log: Log, iwae_k: int
    ) -> tuple[Model, TestEvaluation]:
        assert isinstance(model, Autoencoder)
        s = self.splits
        if isinstance(model, ConvVAE):
            log(
                f"importance-weighted test likelihood, k = {iwae_k}; density baselines: PPCA and "
                "a Gaussian mixture"
            )
        result = evaluate_autoencoder(model, s.train_x, test_x, test_y, s.classes)
        if isinstance(model, ConvVAE):
            result.metrics["test_nll_iwae"] = iwae_nll(model, test_x, iwae_k)
            result.metrics["iwae_k"] = float(iwae_k)
        return model, result

    def curve_errors(
        self, model: Model, test_x: torch.Tensor, test_y: torch.Tensor, seed: int
    ) -> tuple[float, float]:
        """Training and test error of a logistic regression on the latents."""
        assert isinstance(model, Autoencoder)
        s = self.splits
        z_train, z_test = (encode(model, x).cpu().numpy() for x in (s.train_x, test_x))
        y_train, y_test = s.train_y.cpu().numpy(), test_y.cpu().numpy()
        regression = fit_quietly(latent_logistic_regression(seed), z_train, y_train)
        return 1 - regression.score(z_train, y_train), 1 - regression.score(z_test, y_test)

    def latent_dim(self, model: Model) -> int | None:
        assert isinstance(model, Autoencoder)
        return model.cfg.latent_dim

    def epoch_metrics(self, model: Model, probe: bool) -> tuple[dict[str, float], list[float]]:
        """A VAE's active units (and its KL per dimension, returned beside), and, if asked, the
        linear probe's validation accuracy: measured on the validation split every epoch."""
        assert isinstance(model, Autoencoder)
        s, metrics, kl = self.splits, {}, list[float]()
        if isinstance(model, ConvVAE):
            kl, active = posterior_stats(model, s.val_x)
            metrics["active_units"] = float(active)
        if probe:
            if self._probe is None or len(self._probe) > len(s.train_x):
                self._probe = probe_subset(len(s.train_x)).to(s.train_x.device)
            fit_on = (s.train_x[self._probe], s.train_y[self._probe])
            metrics[PROBE] = probe_accuracy(model, fit_on, (s.val_x, s.val_y))
        return metrics, kl


@dataclass
class PixelTask:
    """A classifier trained from scratch on pixels: the pixel CNN."""

    splits: Splits
    lineage: Lineage = field(default_factory=dict)
    stage: str = "cnn"
    curve_evaluation = "the classifier's own predictions"
    pictured = False

    def build(self, config: TrialConfig) -> Model:
        smoothing = config.train.label_smoothing
        model = PixelCNN(sized(config.model, self.splits), len(self.splits.classes), smoothing)
        return model.standardize_with(self.splits.train_x)

    def data(self, config: TrialConfig) -> tuple[Tensors, Tensors]:
        s = self.splits
        return (s.train_x, s.train_y), (s.val_x, s.val_y)

    def evaluate_test(
        self, model: Model, test_x: torch.Tensor, test_y: torch.Tensor, log: Log, iwae_k: int
    ) -> tuple[Model, TestEvaluation]:
        return model, evaluate_classifier(model, test_x, test_y, self.splits.classes)

    def curve_errors(
        self, model: Model, test_x: torch.Tensor, test_y: torch.Tensor, seed: int
    ) -> tuple[float, float]:
        return _classifier_errors(model, self.splits, test_x, test_y)

    def latent_dim(self, model: Model) -> int | None:
        return None  # a pixel CNN has none

    def epoch_metrics(self, model: Model, probe: bool) -> tuple[dict[str, float], list[float]]:
        return {}, []


@dataclass
class HeadTask:
    """The MLP head on a trained encoder: frozen (on cached latents) or fine-tuned with it."""

    encoder: Autoencoder | GraphEncoder  # a graph: a registered encoder whose class is not here
    splits: Splits
    lineage: Lineage = field(default_factory=dict)  # where the encoder came from
    stage: str = "mlp"
    curve_evaluation = "the classifier's own predictions"
    pictured = False
    _latents: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, init=False, repr=False)

    def build(self, config: TrialConfig) -> Model:
        classes, smoothing = len(self.splits.classes), config.train.label_smoothing
        head = MLPHead(self.encoder.latent_dim, config.head, classes, smoothing)
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
            s = self.splits
            self._latents = (encode(self.encoder, s.train_x), encode(self.encoder, s.val_x))
        return self._latents

    def classifier(self, model: Model) -> Model:
        """Images in, class scores out: a frozen head is put behind the encoder."""
        if isinstance(model, Classifier | Ensemble):  # an ensemble's members take images
            return model
        assert isinstance(model, MLPHead)
        return Classifier(self.encoder, model)

    def evaluate_test(
        self, model: Model, test_x: torch.Tensor, test_y: torch.Tensor, log: Log, iwae_k: int
    ) -> tuple[Model, TestEvaluation]:
        """The classifier's scores, and the logistic-regression baselines on the same test."""
        classifier = self.classifier(model)
        result = evaluate_classifier(classifier, test_x, test_y, self.splits.classes)
        log("baselines on the same test split: logistic regression on latents, PCA and pixels")
        s = self.splits
        train_z, test_z = self.latents()[0], encode(self.encoder, test_x)
        scores = logistic_baselines(train_z, test_z, s.train_x, test_x, s.train_y, test_y)
        result.baselines = {f"test_accuracy_{name}": v for name, v in scores.items()}
        result.metrics |= result.baselines
        return classifier, result

    def curve_errors(
        self, model: Model, test_x: torch.Tensor, test_y: torch.Tensor, seed: int
    ) -> tuple[float, float]:
        return _classifier_errors(self.classifier(model), self.splits, test_x, test_y)

    def latent_dim(self, model: Model) -> int | None:
        return self.encoder.latent_dim

    def epoch_metrics(self, model: Model, probe: bool) -> tuple[dict[str, float], list[float]]:
        return {}, []


Task = AutoencoderTask | HeadTask | PixelTask


def deployed(task: Task, model: Model) -> Model:
    """What a promotion registers for `model`: images in, as it is served (a frozen head is
    put behind its encoder)."""
    return task.classifier(model) if isinstance(task, HeadTask) else model


def sized(config: ModelConfig, splits: Splits) -> ModelConfig:
    """The model's config at the data's image shape: the one place `model.image` is set."""
    return dataclasses.replace(config, image=splits.image_shape)


def retrain(
    task: Task,
    config: TrialConfig,
    seed: int,
    epochs: int | None = None,
    *,
    validate: bool = False,
    on_epoch_end: EpochCallback | None = None,
) -> tuple[Model, list[EpochResult]]:
    """Train `config` on the task's training split with `seed`, evaluating on its validation
    split after each epoch if `validate`. `epochs` stops it after that many epochs of the
    config's own schedule: a trial's best epoch, reproduced as the trial trained it."""
    torch.manual_seed(seed)
    model = task.build(config).to(task.splits.train_x.device)
    train, val = task.data(config)
    val_or_none = val if validate else None
    history = fit(
        model,
        train,
        val_or_none,
        resolved(config.train, model, train),
        seed=seed,
        on_epoch_end=on_epoch_end,
        stop_after=epochs,
    )
    return model, history


def with_splits(task: Task, splits: Splits) -> Task:
    """The same task on other images (a head task encodes them afresh)."""
    return dataclasses.replace(task, splits=splits)


def _classifier_errors(
    classifier: Model, splits: Splits, test_x: torch.Tensor, test_y: torch.Tensor
) -> tuple[float, float]:
    def error(x: torch.Tensor, y: torch.Tensor) -> float:
        return 1 - float((predict(classifier, x) == y).float().mean())

    return error(splits.train_x, splits.train_y), error(test_x, test_y)
