"""CIFAR-10, the official python batches (`cifar-10-batches-py/data_batch_1..5`, `test_batch`,
`batches.meta`). The batches are pickles: they are read by an unpickler that builds numpy
arrays and plain containers only, so a crafted file cannot run code. Downloaded by torchvision
when missing and online."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from vae_tune.data.base import TRAIN, Images, Source, check_labels
from vae_tune.errors import DataError

FOLDER = "cifar-10-batches-py"
CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# What numpy arrays pickle into; nothing else may be built.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("copyreg", "_reconstructor"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR batch")
        return super().find_class(module, name)


def load_batch(path: Path) -> dict[bytes, Any]:
    try:
        with open(path, "rb") as f:
            batch = _ArraysOnly(f, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise DataError(f"cannot read {path} as a CIFAR-10 python batch: {exc}") from exc
    if not isinstance(batch, dict):
        raise DataError(f"{path}: a CIFAR-10 batch is a dict, got {type(batch).__name__}")
    return batch


def read(data_dir: Path, split: str) -> Images:
    folder = data_dir / FOLDER
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == TRAIN else ["test_batch"]
    if not all((folder / n).is_file() for n in names):
        _download(data_dir)
    xs, ys = [], []
    for name in names:
        path = folder / name
        batch = load_batch(path)
        data, labels = batch.get(b"data"), batch.get(b"labels")
        if not isinstance(data, np.ndarray) or labels is None:
            raise DataError(f"{path}: expected the keys data and labels of a CIFAR-10 batch")
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(f"{path}: data must be uint8 (N, 3072), got {data.dtype} {data.shape}")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(check_labels(path, np.asarray(labels), len(CLASSES), len(data)))
    return Images(np.concatenate(xs), np.concatenate(ys))


def _download(data_dir: Path) -> None:
    import torchvision.datasets

    folder = data_dir / FOLDER
    existed = folder.exists()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        torchvision.datasets.CIFAR10(str(data_dir), download=True)
    except Exception as exc:  # offline, DNS, HTTP or checksum errors all mean "not available"
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        raise DataError(
            f"cifar10 data not found: expected data_batch_1 to 5 and test_batch in {folder}. "
            f"Point --data-dir or VAE_TUNE_DATA at the folder that holds {FOLDER}/.\n"
            f"Download failed: {exc}"
        ) from exc


CIFAR10 = Source(
    "cifar10",
    CLASSES,
    mirror=True,
    about="32x32 RGB photographs of 10 kinds of object; a mirrored photograph is still one",
    read=read,
)
