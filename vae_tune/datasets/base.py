"""What every dataset reader gives: a split's images as uint8 (N, C, H, W) and its labels, and
the facts that decide how a dataset is trained (its classes, whether a mirror image keeps its
class)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vae_tune.errors import DataError

TRAIN, TEST = "train", "test"


@dataclass(frozen=True)
class Images:
    """A split as read from disk: uint8 images (N, C, H, W), int64 labels (N,)."""

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        assert self.x.dtype == np.uint8 and self.x.ndim == 4, "readers give uint8 NCHW"
        assert len(self.x) == len(self.y), "readers check their lengths"


@dataclass(frozen=True)
class Source:
    """One dataset: where it is read from and how it is trained by default.

    `read(data_dir, split)` gives a split; `has_test(data_dir)` whether a test split exists
    (a folder without `test/` is held out instead). `mirror`: a left-right mirrored image is
    still an image of its class (clothes, photographs), unlike a digit's.
    """

    name: str
    classes: tuple[str, ...]
    mirror: bool
    about: str
    read: Callable[[Path, str], Images]
    has_test: Callable[[Path], bool] = lambda data_dir: True


def check_labels(path: Path | str, labels: np.ndarray, n_classes: int, x_len: int) -> np.ndarray:
    """Labels as int64 in [0, n_classes), as many as images; a DataError naming the file."""
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != x_len:
        raise DataError(f"{path}: {x_len} images but {len(labels)} labels")
    whole = np.issubdtype(labels.dtype, np.integer) or np.all(np.equal(np.mod(labels, 1), 0))
    if labels.size and not whole:
        raise DataError(f"{path}: labels must be whole numbers, got {labels.dtype} values")
    labels = labels.astype(np.int64)
    bad = labels[(labels < 0) | (labels >= n_classes)]
    if bad.size:
        raise DataError(
            f"{path}: label {int(bad[0])} is out of range: {n_classes} classes take labels "
            f"0 to {n_classes - 1}"
        )
    return labels
