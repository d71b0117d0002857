"""What every dataset reader gives: a split's images as uint8 (N, C, H, W) and its labels, and
the facts that decide how a dataset is trained (its classes, whether a mirror image keeps its
class)."""

from __future__ import annotations

import os
import re
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
    labels = whole_labels(path, labels)
    if len(labels) != x_len:
        raise DataError(f"{path}: {x_len} images but {len(labels)} labels")
    bad = labels[(labels < 0) | (labels >= n_classes)]
    if bad.size:
        raise DataError(
            f"{path}: label {int(bad[0])} is out of range: {n_classes} classes take labels "
            f"0 to {n_classes - 1}"
        )
    return labels


def whole_labels(path: Path | str, labels: np.ndarray) -> np.ndarray:
    """Labels as int64, refused unless each is a whole number int64 holds (no strings, NaN)."""
    labels = np.asarray(labels).reshape(-1)
    kind = labels.dtype.kind
    if kind not in "biuf":
        what = {"U": "strings", "S": "byte strings", "c": "complex numbers"}.get(kind, "values")
        raise DataError(
            f"{path}: labels must be whole numbers 0 to K-1 (one per class), got {what} "
            f"({labels.dtype}); number the classes and name them in a `classes` array"
        )
    if not labels.size:
        return labels.astype(np.int64)
    if kind == "f":
        bad = ~np.isfinite(labels) | (labels != np.round(labels))
        if bad.any():
            raise DataError(
                f"{path}: label {labels[bad][0]} is not a whole number; labels number the "
                "classes 0 to K-1"
            )
    # Compared before the cast: a float 1e30 or a uint64 2**63 would wrap into another label.
    most = labels.max()
    if most > INT64_MAX:
        raise DataError(f"{path}: label {most} is out of range; labels number the classes 0 to K-1")
    return labels.astype(np.int64)


def counted_classes(path: Path | str, labels: np.ndarray) -> int:
    """K, for labels that number their classes 0 to K-1 with no name given for them: each of
    the K classes must have an image, so K is at most the number of images. A stray label
    (2**40 among 0 to 9) is refused here, not turned into 10^12 empty classes."""
    labels = whole_labels(path, labels)
    if not labels.size:
        return 1
    present = np.unique(labels)
    if present[0] < 0:
        raise DataError(
            f"{path}: label {int(present[0])} is out of range: labels number the classes 0 to K-1"
        )
    count = int(present[-1]) + 1
    if count > len(present):
        # The smallest class without an image: there is one among 0 to len(present).
        missing = int(np.setdiff1d(np.arange(len(present) + 1), present)[0])
        raise DataError(
            f"{path}: labels must number the classes 0 to K-1 with an image in each; the "
            f"largest label is {count - 1} but only {len(present)} distinct labels are used "
            f"(none is {missing}); relabel them, or name every class in a `classes` array"
        )
    return count


MEMORY_VARIABLE = "VAE_TUNE_MEMORY_LIMIT"
INT64_MAX = np.iinfo(np.int64).max
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def memory_limit() -> tuple[int | None, str]:
    """Bytes a dataset may take in memory, and where that figure comes from:
    `$VAE_TUNE_MEMORY_LIMIT` (bytes, or 512M, 4G; read at each call, so a test or a shared
    machine can set it), else what the kernel could give now (MemAvailable, within this
    process's cgroup limit); None where neither can be read."""
    value = os.environ.get(MEMORY_VARIABLE, "").strip()
    if value:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", value, re.IGNORECASE)
        limit = int(float(match[1]) * _UNITS[match[2].upper()]) if match else 0
        if limit <= 0:
            raise DataError(f"{MEMORY_VARIABLE}={value}: give bytes, or a size such as 512M or 4G")
        return limit, f"{MEMORY_VARIABLE}={value}"
    return _available(), "the memory available"


def check_fits(what: str, need: int) -> None:
    """Refuse, before any decoding, data that would not fit in memory."""
    limit, source = memory_limit()
    if limit is not None and need > limit:
        raise DataError(
            f"{what} {_size(need)} in memory, more than {source} ({_size(limit)}); use fewer "
            f"or smaller images, or set {MEMORY_VARIABLE} if more memory is free than this "
            "machine reports"
        )


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _available() -> int | None:
    found = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    # In a container MemAvailable is the host's; the cgroup's limit is what this process gets.
    try:
        cgroup = Path("/sys/fs/cgroup")
        most = (cgroup / "memory.max").read_text().strip()
        if most != "max":
            left = int(most) - int((cgroup / "memory.current").read_text())
            found = left if found is None else min(found, left)
    except (OSError, ValueError):
        pass
    return found
