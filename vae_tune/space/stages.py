"""The stages a study can search, in one registry: what each optimises, which keys its space
may use, what it trains, whether it needs an encoder, its own pruning rule and its names.

Four stages: the autoencoder (`ae`), the VAE (`vae`), the classifier head on an encoder
(`mlp` on the command line; `HEAD` here, not to be confused with the fully connected model
family or head family, which YAML also calls `mlp`) and the pixel CNN (`cnn`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field

from vae_tune.data.catalog import short_name
from vae_tune.data.splits import Splits
from vae_tune.errors import VaeTuneError
from vae_tune.evaluation.latents import PROBE
from vae_tune.evaluation.tasks import AutoencoderTask, HeadTask, Lineage, PixelTask, Task
from vae_tune.models.config import config_keys
from vae_tune.models.graph import GraphEncoder
from vae_tune.models.nets import Autoencoder

Encoder = tuple[Autoencoder | GraphEncoder, Lineage]
# A stage's own reason to stop a trial after an epoch: (metrics, epoch, settings) -> reason.
EpochRule = Callable[[Mapping[str, float], int, "CollapseLimits"], str | None]


@dataclass(frozen=True)
class CollapseLimits:
    """A VAE has collapsed when, from epoch 2 on, fewer dimensions than `min_active_units` are
    active, or (the older rule) its validation KL is under `min_kl` nats."""

    min_active_units: int | None = None
    min_kl: float | None = None


@dataclass(frozen=True)
class Stage:
    name: str  # as the command line, the space files and the stored settings spell it
    metrics: Mapping[str, str]  # metric -> its direction; the first is the default
    keys: frozenset[str]  # the dotted config keys its search space may use
    make_task: Callable[[Splits, Encoder | None], Task]
    needs_encoder: bool = False
    needs_labels: bool = False  # a classifier: nothing to learn from unlabelled images
    epoch_rule: EpochRule | None = None
    # What `--objective` may name: objective -> (metric, direction); a stage with latents
    # offers `probe`.
    objectives: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def default_metric(self) -> str:
        return next(iter(self.metrics))

    def study_name(self, dataset: str, encoder: str = "ae") -> str:
        """`STAGE-DATASET`; a head's names its encoder: `mlp-ENCODER-DATASET` (a folder or
        npz dataset by its folder's or file's name)."""
        short = short_name(dataset)
        return f"{self.name}-{encoder}-{short}" if self.needs_encoder else f"{self.name}-{short}"

    def registry_name(self, dataset: str) -> str:
        """The name its champions are registered under in MLflow's model registry."""
        return f"vae-tune-{short_name(dataset)}-{self.name}"


def posterior_collapse(
    metrics: Mapping[str, float], epoch: int, limits: CollapseLimits
) -> str | None:
    """A VAE with too few active units (or too small a KL) from epoch 2 on has collapsed."""
    if epoch < 2:
        return None
    active, kl = metrics.get("active_units"), metrics.get("val_kl")
    least = limits.min_active_units
    if least is not None and active is not None and active < least:
        return f"posterior collapse at epoch {epoch}: {active:.0f} active units < {least}"
    if limits.min_kl is not None and kl is not None and kl < limits.min_kl:
        return f"posterior collapse at epoch {epoch}: KL {kl:.3g} < {limits.min_kl} nats"
    return None


def _keys(
    prefixes: tuple[str, ...], extra: Set[str] = frozenset(), drop: Set[str] = frozenset()
) -> frozenset[str]:
    every = config_keys()
    return frozenset(k for k in every if (k.startswith(prefixes) or k in extra) and k not in drop)


_VAE_ONLY = {"model.beta", "model.likelihood", "model.sigma"}
# A fine-tuned encoder's own rate, labels to smooth: a classifier's keys only.
_CLASSIFIER_ONLY = {"train.encoder_lr", "train.label_smoothing"}
_FROM_DATA = "model.image"  # set from the images (tasks.sized), never by a space
_TRAINING = "train."

AE = Stage(
    "ae",
    {"val_loss": "minimize", "val_mse": "minimize", PROBE: "maximize"},
    _keys(("model.", _TRAINING), drop={*_CLASSIFIER_ONLY, _FROM_DATA, *_VAE_ONLY}),
    lambda splits, encoder: AutoencoderTask("ae", splits),
    objectives={"loss": ("val_loss", "minimize"), "probe": (PROBE, "maximize")},
)
VAE = Stage(
    "vae",
    {"val_neg_elbo": "minimize", "val_loss": "minimize", "val_mse": "minimize", PROBE: "maximize"},
    _keys(("model.", _TRAINING), drop={*_CLASSIFIER_ONLY, _FROM_DATA}),
    lambda splits, encoder: AutoencoderTask("vae", splits),
    epoch_rule=posterior_collapse,
    objectives={"elbo": ("val_neg_elbo", "minimize"), "probe": (PROBE, "maximize")},
)


def _head_task(splits: Splits, encoder: Encoder | None) -> Task:
    assert encoder is not None, "a head study needs its encoder"
    return HeadTask(encoder[0], splits, lineage=encoder[1])


HEAD = Stage(
    "mlp",
    {"val_accuracy": "maximize", "val_loss": "minimize"},
    _keys(("head.", _TRAINING)),
    _head_task,
    needs_encoder=True,
    needs_labels=True,
)
PIXEL_CNN = Stage(
    "cnn",
    {"val_accuracy": "maximize", "val_loss": "minimize"},
    # Its conv widths, hidden layer and dropout; no encoder to tune.
    _keys(
        (_TRAINING,),
        extra={"model.channels", "model.hidden", "model.dropout", "model.batchnorm"},
        drop={"train.encoder_lr"},
    ),
    lambda splits, encoder: PixelTask(splits),
    needs_labels=True,
)

STAGES: dict[str, Stage] = {s.name: s for s in (AE, VAE, HEAD, PIXEL_CNN)}
ENCODER_STAGES = ("ae", "vae")


def stage(name: str) -> Stage:
    try:
        return STAGES[name]
    except KeyError:
        raise VaeTuneError(f"unknown stage {name!r}; choose one of {sorted(STAGES)}") from None
