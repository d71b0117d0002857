"""Defaults that suit the data: a space's `auto` values, decided by the dataset at hand.

- `train.augment: auto`: `flip_alt_shift` where a mirrored image keeps its class (Fashion-MNIST,
  CIFAR-10): each image seen both ways every two epochs (with the head's other tricks it led
  random flips, `flip_shift`, on all three seeds of benchmarks/defaults.py); else `shift`
  (digits: MNIST, SVHN; and any folder or npz, unless its space says otherwise);
- `model.likelihood: auto`: `bernoulli` for binary-like images (most pixels near 0 or 1, as in
  MNIST), else `gaussian` with the space's fixed `model.sigma` (grayscale clothes, RGB photos).
  A Bernoulli likelihood on images that are not binary-like is refused: binarizing them would
  model another dataset.

The resolved values are the study's fixed values, stored with it, so a resumed study and a
promotion replay exactly what ran.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from vae_tune.data.splits import Splits
from vae_tune.errors import ConfigError

AUTO = "auto"
BINARY_LIKE = 0.85  # share of pixels within 0.1 of 0 or 1: MNIST 0.91, Fashion-MNIST 0.60


def binary_like(images: torch.Tensor, sample: int = 4096) -> bool:
    x = images[:sample]
    return float(((x <= 0.1) | (x >= 0.9)).float().mean()) >= BINARY_LIKE


def auto_augment(mirror: bool) -> str:
    """`train.augment: auto` for data whose mirrored images do (or do not) keep their class."""
    return "flip_alt_shift" if mirror else "shift"


def data_defaults(fixed: Mapping[str, Any], splits: Splits) -> dict[str, Any]:
    """The fixed values to set for this dataset: each `auto` decided, and checked."""
    chosen: dict[str, Any] = {}
    if fixed.get("train.augment") == AUTO:
        chosen["train.augment"] = auto_augment(splits.mirror)
    likelihood = fixed.get("model.likelihood")
    if likelihood in (AUTO, "bernoulli"):
        binary = binary_like(splits.train_x)
        if likelihood == "bernoulli" and not binary:
            raise ConfigError(
                "model.likelihood",
                f"bernoulli fits binary-like images (most pixels near 0 or 1, like MNIST's); "
                f"those of {splits.dataset} are not: use gaussian, or auto",
            )
        chosen["model.likelihood"] = "bernoulli" if binary else "gaussian"
    return chosen


def describe(splits: Splits, resolved: Mapping[str, Any]) -> str:
    """One line for the study's log: the dataset and the choices made for it."""
    c, h, w = splits.image_shape
    shown = ", ".join(f"{k} {v}" for k, v in resolved.items())
    return (
        f"{splits.dataset}: {len(splits.train_x)} training images of {c}x{h}x{w}, "
        f"{len(splits.classes)} classes" + (f"; for this data: {shown}" if shown else "")
    )
