"""Frozen configs for models and training, addressed by flat dotted keys (`train.lr`).

The dotted key is the one name a hyperparameter has everywhere: in the YAML search space, in
Optuna's trial params, in MLflow's run params and here. `build_config` is the only way a flat
mapping becomes typed configs, so every value is checked in one place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from vae_tune.errors import ConfigError
from vae_tune.models import contract
from vae_tune.models.augment import AUGMENTATIONS

PRECISIONS = ("fp32", "bf16", "fp16", "auto")  # see precision.py
LR_SCALES = ("none", "linear", "sqrt")
REFERENCE_BATCH = 128  # the batch size the learning-rate ranges are given at

OPTIMIZERS = ("adam", "adamw", "sgd")
LIKELIHOODS = ("gaussian", "bernoulli", "auto")
INITS = ("default", "dirac")
HEAD_MODES = ("frozen", "finetune")
SCHEDULES = ("constant", "cosine", "onecycle")
FAMILIES = contract.BUILT_IN
HEAD_FAMILIES = ("mlp", "linear")
MIN_SIDE = 12  # the conv encoder's three stride-2 layers need 12 pixels a side


@dataclass(frozen=True)
class ModelConfig:
    """The AE/VAE: conv or fully connected layers, the bottleneck; likelihood terms (VAE)."""

    # conv, or mlp: fully connected (hidden [, hidden2] units); or a user's own model
    # (`package.module:Class`, or an installed entry point's name: models/contract.py)
    family: str = "conv"
    latent_dim: int = 32
    dropout: float = 0.0
    channels: tuple[int, int, int] = (8, 16, 32)
    hidden: int = 64
    hidden2: int = 0  # mlp family: a second hidden layer of this width; 0 for none
    batchnorm: bool = False  # batch norm after each conv layer
    beta: float = 1.0  # VAE: weight of the KL term in the training loss
    # VAE: gaussian (fixed sigma), bernoulli (binarized pixels: binary-like images only), or
    # auto: the one the data calls for (see data/defaults.py); resolved before training
    likelihood: str = "gaussian"
    sigma: float = 0.1  # VAE: standard deviation of the gaussian likelihood
    # conv family: dirac starts each encoder conv as close to the identity as its shape allows
    # (layers.identity_like), the fastest trainers' initialisation; default: torch's own
    init: str = "default"
    # The images' (channels, height, width): set from the data, never searched.
    image: tuple[int, int, int] = (1, 28, 28)
    # A user's model's own keys (`model.<name>` in a space), checked against its factory.
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        _check("model.latent_dim", self.latent_dim >= 1, "must be >= 1")
        _check("model.dropout", 0.0 <= self.dropout < 1.0, "must be in [0, 1)")
        _check(
            "model.channels",
            len(self.channels) == 3 and all(c >= 1 for c in self.channels),
            "must be three positive channel widths",
        )
        contract.check_family(self.family)
        if self.options and not contract.is_own(self.family):
            key = f"model.{self.options[0][0]}"
            raise ConfigError(key, f"unknown key for the built-in {self.family!r} family")
        _check("model.hidden", self.hidden >= 1, "must be >= 1")
        _check("model.hidden2", self.hidden2 >= 0, "must be >= 0 (0: one hidden layer)")
        _check("model.beta", self.beta >= 0, "must be >= 0")
        _check("model.likelihood", self.likelihood in LIKELIHOODS, f"must be one of {LIKELIHOODS}")
        _check("model.sigma", self.sigma > 0, "must be > 0")
        _check("model.init", self.init in INITS, f"must be one of {INITS}")
        _check(
            "model.init",
            self.init == "default" or self.family == "conv",
            f"{self.init} initialises conv layers: the {self.family!r} family has none",
        )
        image_ok = len(self.image) == 3 and self.image[0] in (1, 3)
        _check(
            "model.image",
            image_ok and min(self.image[1:]) >= MIN_SIDE,
            f"(channels, height, width) with 1 or 3 channels and sides of {MIN_SIDE} or more",
        )


@dataclass(frozen=True)
class HeadConfig:
    """The classification head: latent -> hidden1 -> hidden2 -> classes (family mlp), or
    latent -> classes (family linear: multinomial logistic regression, trained by the loop)."""

    family: str = "mlp"
    hidden1: int = 256
    hidden2: int = 128
    dropout: float = 0.2
    mode: str = "frozen"  # frozen: train on cached latents; finetune: encoder and head together

    def __post_init__(self) -> None:
        _check("head.family", self.family in HEAD_FAMILIES, f"must be one of {HEAD_FAMILIES}")
        _check("head.hidden1", self.hidden1 >= 1, "must be >= 1")
        _check("head.hidden2", self.hidden2 >= 1, "must be >= 1")
        _check("head.dropout", 0.0 <= self.dropout < 1.0, "must be in [0, 1)")
        _check("head.mode", self.mode in HEAD_MODES, f"must be one of {HEAD_MODES}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation: optimizer and its settings, epochs, batch size."""

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    epochs: int = 10
    batch_size: int = 128
    encoder_lr: float = 1e-4  # fine-tuning: the encoder's own learning rate
    # constant; cosine: a short linear warm-up, then cosine decay to zero over the epochs;
    # onecycle: linear warm-up over the first quarter of the steps, then linear decay to zero
    schedule: str = "constant"
    # flip_shift: random mirror and 2-pixel shifts of training images; flip_alt(_shift): each
    # image mirrored in alternate epochs (augment.py)
    augment: str = "none"
    precision: str = "fp32"  # fp32, bf16, fp16 (CUDA), auto: bf16 where measured faster
    # none, or linear / sqrt: train.lr (and encoder_lr) hold at batch 128 and scale with the
    # batch size, so one range serves a space that searches or changes the batch
    lr_scale: str = "none"
    # The fastest trainers' tricks (airbench), each off by default. A classifier's training
    # loss is cross-entropy against labels smoothed by this much (its validation figures stay
    # plain); 0 for none.
    label_smoothing: float = 0.0
    # 0 for none, else the decay of an exponential moving average of the weights (and
    # batch-norm statistics), updated every step: what is validated and what the fit returns.
    ema: float = 0.0
    # The batch-norm layers' weights and biases learn at this multiple of their group's rate.
    bn_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        _check("train.optimizer", self.optimizer in OPTIMIZERS, f"must be one of {OPTIMIZERS}")
        _check("train.lr", self.lr > 0, "must be > 0")
        _check("train.weight_decay", self.weight_decay >= 0, "must be >= 0")
        _check("train.momentum", 0.0 <= self.momentum < 1.0, "must be in [0, 1)")
        _check("train.epochs", self.epochs >= 1, "must be >= 1")
        _check("train.batch_size", self.batch_size >= 1, "must be >= 1")
        _check("train.encoder_lr", self.encoder_lr > 0, "must be > 0")
        _check("train.schedule", self.schedule in SCHEDULES, f"must be one of {SCHEDULES}")
        _check("train.augment", self.augment in AUGMENTATIONS, f"must be one of {AUGMENTATIONS}")
        _check("train.precision", self.precision in PRECISIONS, f"must be one of {PRECISIONS}")
        _check("train.lr_scale", self.lr_scale in LR_SCALES, f"must be one of {LR_SCALES}")
        _check("train.label_smoothing", 0.0 <= self.label_smoothing < 1.0, "must be in [0, 1)")
        _check(
            "train.ema",
            self.ema == 0.0 or 0.0 < self.ema < 1.0,
            "must be 0 (off) or a decay in (0, 1), e.g. 0.999",
        )
        _check(
            "train.bn_lr_scale",
            0 < self.bn_lr_scale < float("inf"),
            "must be a finite number > 0 (1: the group's own rate)",
        )

    def lr_factor(self) -> float:
        """What train.lr is multiplied by at this batch size (1 without lr_scale)."""
        ratio = self.batch_size / REFERENCE_BATCH
        return {"none": 1.0, "linear": ratio, "sqrt": ratio**0.5}[self.lr_scale]


@dataclass(frozen=True)
class TrialConfig:
    """Everything one training run needs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_SECTIONS: dict[str, type] = {"model": ModelConfig, "head": HeadConfig, "train": TrainConfig}


OPTIONS = "model.options"  # a user's model's own keys travel inside ModelConfig under this


def config_keys() -> dict[str, Any]:
    """Every valid dotted key with its declared type (`train.lr` -> float); a user's model
    adds its own `model.` keys (`contract.own_keys`)."""
    keys: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        for name, hint in get_type_hints(cls).items():
            keys[f"{section}.{name}"] = hint
    del keys[OPTIONS]
    return keys


def build_config(flat: Mapping[str, Any]) -> TrialConfig:
    """Turn `{"train.lr": 0.01, ...}` into a TrialConfig; missing keys keep their defaults.
    With a user's model (`model.family`), the `model.` keys vae-tune does not know are its
    own, checked against its factory's."""
    known = config_keys()
    family = flat.get("model.family", ModelConfig.family)
    per_section: dict[str, dict[str, Any]] = {section: {} for section in _SECTIONS}
    own: dict[str, Any] = {}
    for key, value in flat.items():
        if key not in known and key.startswith("model.") and contract.is_own(str(family)):
            own[key.removeprefix("model.")] = value
            continue
        if key not in known:
            raise ConfigError(key, f"unknown key; known keys: {', '.join(sorted(known))}")
        section, name = key.split(".", 1)
        per_section[section][name] = _coerce(key, value, known[key])
    if contract.is_own(str(family)):
        per_section["model"]["options"] = _own_options(str(family), own)
    return TrialConfig(
        **{section: _SECTIONS[section](**values) for section, values in per_section.items()}
    )


def flatten(config: TrialConfig) -> dict[str, Any]:
    """The inverse of build_config: dotted key -> value."""
    flat: dict[str, Any] = {}
    for section in _SECTIONS:
        for name, value in dataclasses.asdict(getattr(config, section)).items():
            flat[f"{section}.{name}"] = value
    for name, value in flat.pop(OPTIONS):
        flat[f"model.{name}"] = value
    return flat


def _own_options(family: str, given: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A user's model's own keys as given (without `model.`), checked against its factory's
    and coerced as vae-tune's own keys are."""
    keys = contract.own_keys(family)
    checked = []
    for name, value in sorted(given.items()):
        if name not in keys:
            raise contract.not_a_key(family, name)
        checked.append((name, _coerce(f"model.{name}", value, keys[name].type, f"{family} takes")))
    return tuple(checked)


def _coerce(key: str, value: Any, hint: Any, expected: str = "expected") -> Any:
    """Accept the value if it fits the declared type; ints are fine where floats are expected."""
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    is_tuple = getattr(hint, "__origin__", None) is tuple and isinstance(value, list | tuple)
    if is_tuple and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    type_name = getattr(hint, "__name__", str(hint))
    raise ConfigError(key, f"{expected} {type_name}, got {value!r} ({type(value).__name__})")


def _check(key: str, ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(key, message)
