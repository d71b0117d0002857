"""A space that names the user's own model (`model.family: package.module:Class`, or an
installed entry point): which keys it may set, checked before any training.

The common keys stay (`model.latent_dim`, `model.dropout`, a VAE's likelihood keys, every
`train.` key); the built-in layers' keys go; the model's own keys come from its factory
(models/contract.py). A required key left out, or an own model searched rather than fixed, is
refused naming the file, the key and the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vae_tune.errors import ConfigError, SpaceError
from vae_tune.models import contract
from vae_tune.space.stages import ENCODER_STAGES, Stage

FAMILY = "model.family"
BUILT_IN_LAYERS = {"model.channels", "model.hidden", "model.hidden2", "model.batchnorm"}


def space_keys(
    source: str, stage: Stage, fixed: Mapping[str, Any], search: Mapping[str, Any]
) -> frozenset[str]:
    """The keys this space may use: its stage's, or, with a model of the user's own, the common
    ones and the model's."""
    spec = search.get(FAMILY)  # a malformed one is the parameter parser's to refuse
    choices = spec.get("choices") if isinstance(spec, Mapping) else None
    if isinstance(choices, list) and any(
        isinstance(c, str) and contract.is_own(c) for c in choices
    ):
        raise SpaceError(source, f"search.{FAMILY}", "a model of your own is fixed, not searched")
    family = fixed.get(FAMILY)
    if not (isinstance(family, str) and contract.is_own(family)):
        return stage.keys
    if stage.name not in ENCODER_STAGES:
        raise SpaceError(
            source, f"fixed.{FAMILY}", f"a model of your own is an ae or vae, not {stage.name}"
        )
    contract.trust(family)  # the user's own space names it: it may be imported
    try:
        own = contract.own_keys(family)
    except ConfigError as exc:
        raise SpaceError(source, f"fixed.{exc.key}", exc.message) from exc
    allowed = (stage.keys - BUILT_IN_LAYERS) | {f"model.{name}" for name in own}
    for section, keys in (("fixed", fixed), ("search", search)):
        for key in keys:
            if key in BUILT_IN_LAYERS:
                wrong = f"is for the built-in conv and mlp layers, not {family}"
                raise SpaceError(source, f"{section}.{key}", wrong)
            if key.startswith("model.") and key not in allowed:
                refused = contract.not_a_key(family, key.removeprefix("model."))
                raise SpaceError(source, f"{section}.{key}", refused.message)
    given = {k.removeprefix("model.") for k in [*fixed, *search] if k.startswith("model.")}
    for name in contract.missing_keys(family, given):
        raise SpaceError(
            source,
            f"fixed.model.{name}",
            f"{family} requires it (it has no default): fix or search it",
        )
    return allowed
