"""SVHN, the official cropped digits: `train_32x32.mat` and `test_32x32.mat` (32x32 RGB street
numbers). Label 10 stands for the digit 0. Read with scipy; downloaded by torchvision when
missing and online."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from vae_tune.data.base import Images, Source, check_labels
from vae_tune.errors import DataError

CLASSES = tuple(str(d) for d in range(10))


def read(data_dir: Path, split: str) -> Images:
    path = data_dir / "svhn" / f"{split}_32x32.mat"
    if not path.is_file():
        _download(data_dir, split)
    return read_mat(path)


def read_mat(path: Path) -> Images:
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises ValueError, OSError, MatReadError...
        raise DataError(f"cannot read {path} as a MATLAB file: {exc}") from exc
    x, y = mat.get("X"), mat.get("y")
    if x is None or y is None:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"{path}: expected arrays X and y (SVHN's layout), found {keys}")
    if x.ndim != 4 or x.shape[2] != 3 or x.dtype != np.uint8:
        raise DataError(
            f"{path}: X must be uint8 (height, width, 3, N) as in SVHN's .mat files, got "
            f"{x.dtype} {x.shape}"
        )
    labels = np.asarray(y).reshape(-1).astype(np.int64)
    labels = np.where(labels == 10, 0, labels)  # SVHN writes the digit 0 as 10
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # (H, W, C, N) -> (N, C, H, W)
    return Images(images, check_labels(path, labels, len(CLASSES), len(images)))


def _download(data_dir: Path, split: str) -> None:
    import torchvision.datasets

    folder = data_dir / "svhn"
    existed = folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        torchvision.datasets.SVHN(str(folder), split=split, download=True)
    except Exception as exc:  # offline, DNS, HTTP or checksum errors all mean "not available"
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        raise DataError(
            f"svhn data not found: expected {split}_32x32.mat in {folder}. Point --data-dir or "
            f"VAE_TUNE_DATA at the folder that holds svhn/.\nDownload failed: {exc}"
        ) from exc


SVHN = Source(
    "svhn",
    CLASSES,
    mirror=False,
    about="street-view house numbers, 32x32 RGB digits; never mirrored",
    read=read,
)
