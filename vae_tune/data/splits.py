"""Datasets as in-memory tensors: a dataset's images -> a seeded, stratified train/validation
split, and its sealed test split.

The readers live beside it (IDX, SVHN's .mat, CIFAR-10's batches, a folder of images, an
npz). A dataset without a test split of its own (a folder without `test/`, an npz
without `x_test`) has one held out here: a stratified share drawn with a fixed seed, so that
every study of it seals the same images. Studies only ever call `load_splits`; the test split
is read by `load_test`, which only `record/sealed.py` calls.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from vae_tune.data.catalog import TEST, TRAIN, Images, Source, source
from vae_tune.errors import DataError

# The hold-out of a dataset without a test split: a share like MNIST's (10,000 of 70,000),
# drawn with its own fixed seed (not the study's), so that the sealed images never change.
HOLDOUT = {"fraction": 1 / 7, "seed": 0}


@dataclass(frozen=True)
class Splits:
    """Training and validation tensors: images float32 (N, C, H, W) in [0, 1], labels int64."""

    dataset: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    classes: tuple[str, ...]
    mirror: bool = False  # a mirrored image keeps its class: augmentation may flip it

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    @property
    def labelled(self) -> bool:
        """Whether there is anything to classify: a folder without class folders has one
        class, `unlabelled`, and trains autoencoders only."""
        return len(self.classes) > 1


def default_data_dir() -> Path:
    """`$VAE_TUNE_DATA`, or `./data`."""
    return Path(os.environ.get("VAE_TUNE_DATA") or "data")


def holdout_of(dataset: str, data_dir: Path | None = None) -> dict[str, float] | None:
    """The hold-out that stands in for the dataset's test split, or None if it has its own."""
    return None if source(dataset).has_test(data_dir or default_data_dir()) else HOLDOUT


def load_splits(
    dataset: str,
    data_dir: Path | None = None,
    *,
    val_size: int = 12_000,
    train_size: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    holdout: Mapping[str, float] | None = None,
) -> Splits:
    """The seeded, stratified train/validation split of the training images.

    `train_size` takes a stratified subset of the training part (the validation part stays
    as it is), for quick studies.
    """
    found = source(dataset)
    images = _training_images(found, data_dir or default_data_dir(), holdout or HOLDOUT)
    labels = images.y
    classes = len(found.classes)
    # A stratified split needs every class on both sides of it.
    if not classes <= val_size <= len(labels) - classes:
        raise DataError(
            f"--val-size must be between {classes} (one image per class) and "
            f"{len(labels) - classes} for {dataset}, got {val_size}"
        )
    train_idx, val_idx = _stratified(
        found, np.arange(len(labels)), labels, test_size=val_size, random_state=seed
    )
    if train_size is not None and train_size < len(train_idx):
        if train_size < classes:
            raise DataError(f"--train-size must be at least the number of classes: {train_size}")
        train_idx, _ = _stratified(
            found, train_idx, labels[train_idx], train_size=train_size, random_state=seed
        )
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    return Splits(
        found.name,
        _to_images(images.x[train_idx], device),
        torch.from_numpy(labels[train_idx]).to(device),
        _to_images(images.x[val_idx], device),
        torch.from_numpy(labels[val_idx]).to(device),
        found.classes,
        found.mirror,
    )


def load_test(
    dataset: str,
    data_dir: Path | None = None,
    *,
    device: torch.device | str = "cpu",
    holdout: Mapping[str, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sealed test split (`holdout`: the one a study recorded, if the dataset has none of
    its own). Only `sealed.read_test_split` may call this."""
    found = source(dataset)
    folder = data_dir or default_data_dir()
    if found.has_test(folder):
        images = found.read(folder, TEST)
    else:
        images = _held_out(found, folder, holdout or HOLDOUT)[1]
    return _to_images(images.x, device), torch.from_numpy(images.y).to(device)


def _training_images(found: Source, data_dir: Path, holdout: Mapping[str, float]) -> Images:
    _check_folder(data_dir)
    if found.has_test(data_dir):
        return found.read(data_dir, TRAIN)
    return _held_out(found, data_dir, holdout)[0]


def _held_out(found: Source, data_dir: Path, holdout: Mapping[str, float]) -> tuple[Images, Images]:
    """The training images without the hold-out, and the hold-out: stratified, fixed seed."""
    every = found.read(data_dir, TRAIN)
    n = len(every.y)
    test_n = max(len(found.classes), round(n * holdout["fraction"]))
    if n < 3 * test_n:
        raise DataError(
            f"{found.name}: {n} images are too few to hold out a test split of {test_n}; give "
            "it a test split of its own (test/ beside train/, or x_test and y_test)"
        )
    stratify = every.y if len(found.classes) > 1 else None
    keep, held = _stratified(
        found, np.arange(n), stratify, test_size=test_n, random_state=int(holdout["seed"])
    )
    keep, held = np.sort(keep), np.sort(held)
    return Images(every.x[keep], every.y[keep]), Images(every.x[held], every.y[held])


def _check_folder(data_dir: Path) -> None:
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} is a file; give the folder that holds the data")


def _to_images(images: np.ndarray, device: torch.device | str) -> torch.Tensor:
    # uint8 -> float32 once, on the target device: the training loop then only indexes.
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return x.float().div_(255.0)


def _stratified(
    found: Source, indices: np.ndarray, labels: np.ndarray | None, **split: Any
) -> tuple[np.ndarray, np.ndarray]:
    """`train_test_split` stratified by `labels`; a class too small for both sides of the split
    is a DataError naming it, not scikit-learn's ValueError."""
    try:
        first, second = train_test_split(indices, stratify=labels, **split)
    except ValueError as exc:
        counts = np.bincount(labels) if labels is not None else np.array([len(indices)])
        smallest = int(np.argmin(np.where(counts > 0, counts, len(indices) + 1)))
        raise DataError(
            f"{found.name}: class {found.classes[smallest]!r} has {counts[smallest]} image(s), "
            f"too few to appear on both sides of a stratified split ({exc}); give every class "
            "at least a few images"
        ) from None
    return first, second
