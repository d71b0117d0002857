"""Images as the studies see them, for a script or a notebook to try a champion on: the
training or validation split of a dataset, never its test split (promotion reads that, once,
and counts the read on the study)."""

from __future__ import annotations

import os

import torch

from vae_tune.api._common import dataset_name, optional_path
from vae_tune.data.splits import load_splits
from vae_tune.errors import VaeTuneError
from vae_tune.space.options import DEFAULT_SEED

DEFAULT_DATASET = "fashion-mnist"


def images(
    dataset: str = DEFAULT_DATASET,
    *,
    split: str = "validation",
    n: int | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    val_size: int = 12_000,
    seed: int = DEFAULT_SEED,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of a dataset's `validation` or `train` split, as a study with the same
    `val_size` and `seed` splits it: float32 (N, C, H, W) in [0, 1], what models take.

    Args:
        dataset: as ``study``'s ``dataset``.
        split: ``validation`` or ``train``. The test split is promotion's alone.
        n: the first ``n`` images (default: all).
        data_dir: data folder (default ``$VAE_TUNE_DATA`` or ``./data``).
        val_size: validation images, as the study's.
        seed: the split's seed, as the study's.

    Raises:
        VaeTuneError: an unknown split, a bad ``n``, or data that cannot be read.
    """
    if split not in ("validation", "train"):
        raise VaeTuneError(
            f"split={split!r}: give 'validation' or 'train' (the test split is read only by "
            "promotion, which records the read on its study)"
        )
    if n is not None and n < 1:
        raise VaeTuneError(f"n={n}: give at least 1 image, or None for all")
    splits = load_splits(
        dataset_name(dataset), optional_path(data_dir), val_size=val_size, seed=seed
    )
    x, y = (
        (splits.val_x, splits.val_y) if split == "validation" else (splits.train_x, splits.train_y)
    )
    return (x[:n], y[:n]) if n is not None else (x, y)
