"""The stages a study can search, in one registry: what each optimises, which keys its space
may use, what it trains, whether it needs an encoder, its own pruning rule and its names.

Four stages: the autoencoder (`ae`), the VAE (`vae`), the classifier head on an encoder
(`mlp` on the command line; `HEAD` here, not to be confused with the fully connected model
family or head family, which YAML also calls `mlp`) and the pixel CNN (`cnn`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass

from vae_tune.config import config_keys
from vae_tune.data import Splits
from vae_tune.errors import VaeTuneError
from vae_tune.models import Autoencoder
from vae_tune.tasks import AutoencoderTask, HeadTask, Lineage, PixelTask, Task

Encoder = tuple[Autoencoder, Lineage]
# A stage's own reason to stop a trial after an epoch: (metrics, epoch, threshold) -> reason.
EpochRule = Callable[[Mapping[str, float], int, float | None], str | None]


@dataclass(frozen=True)
class Stage:
    name: str  # as the command line, the space files and the stored settings spell it
    metrics: Mapping[str, str]  # metric -> its direction; the first is the default
    keys: frozenset[str]  # the dotted config keys its search space may use
    make_task: Callable[[Splits, Encoder | None], Task]
    needs_encoder: bool = False
    epoch_rule: EpochRule | None = None

    @property
    def default_metric(self) -> str:
        return next(iter(self.metrics))

    def study_name(self, dataset: str, encoder: str = "ae") -> str:
        """`STAGE-DATASET`; a head's names its encoder: `mlp-ENCODER-DATASET`."""
        return (
            f"{self.name}-{encoder}-{dataset}" if self.needs_encoder else f"{self.name}-{dataset}"
        )

    def registry_name(self, dataset: str) -> str:
        """The name its champions are registered under in MLflow's model registry."""
        return f"vae-tune-{dataset}-{self.name}"


def posterior_collapse(
    metrics: Mapping[str, float], epoch: int, min_kl: float | None
) -> str | None:
    """A VAE whose validation KL stays under `min_kl` nats from epoch 2 has collapsed."""
    kl = metrics.get("val_kl")
    if min_kl is None or kl is None or epoch < 2 or kl >= min_kl:
        return None
    return f"posterior collapse at epoch {epoch}: KL {kl:.3g} < {min_kl} nats"


def _keys(
    prefixes: tuple[str, ...], extra: Set[str] = frozenset(), drop: Set[str] = frozenset()
) -> frozenset[str]:
    every = config_keys()
    return frozenset(k for k in every if (k.startswith(prefixes) or k in extra) and k not in drop)


_VAE_ONLY = {"model.beta", "model.likelihood", "model.sigma"}
_TRAINING = "train."

AE = Stage(
    "ae",
    {"val_loss": "minimize", "val_mse": "minimize"},
    _keys(("model.", _TRAINING), drop={"train.encoder_lr", *_VAE_ONLY}),
    lambda splits, encoder: AutoencoderTask("ae", splits),
)
VAE = Stage(
    "vae",
    {"val_neg_elbo": "minimize", "val_loss": "minimize", "val_mse": "minimize"},
    _keys(("model.", _TRAINING), drop={"train.encoder_lr"}),
    lambda splits, encoder: AutoencoderTask("vae", splits),
    epoch_rule=posterior_collapse,
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
)

STAGES: dict[str, Stage] = {s.name: s for s in (AE, VAE, HEAD, PIXEL_CNN)}
ENCODER_STAGES = ("ae", "vae")


def stage(name: str) -> Stage:
    try:
        return STAGES[name]
    except KeyError:
        raise VaeTuneError(f"unknown stage {name!r}; choose one of {sorted(STAGES)}") from None
