"""Datasets as in-memory tensors: IDX files -> a seeded, stratified train/validation split.

Two layouts are read: the shared data folder's (`<dir>/fashion-mnist/*.gz`) and torchvision's
(`<dir>/FashionMNIST/raw/*`), gzipped or not; files lying in `<dir>` itself are refused, since
Fashion-MNIST's and MNIST's share their names. Missing files are downloaded with
torchvision when online. Studies only ever call `load_splits`, which reads the training files;
the test files are read by `load_test`, which only promotion calls.
"""

from __future__ import annotations

import gzip
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from vae_tune.errors import DataError

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DATASETS: dict[str, tuple[str, tuple[str, ...]]] = {
    # name -> (torchvision class and folder name, class names)
    "fashion-mnist": ("FashionMNIST", FASHION_CLASSES),
    "mnist": ("MNIST", tuple(str(d) for d in range(10))),
}
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class Splits:
    """Training and validation tensors: images float32 (N, 1, 28, 28) in [0, 1], labels int64."""

    dataset: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor

    @property
    def classes(self) -> tuple[str, ...]:
        return DATASETS[self.dataset][1]


def default_data_dir() -> Path:
    """`$VAE_TUNE_DATA`, or `./data`."""
    return Path(os.environ.get("VAE_TUNE_DATA") or "data")


def load_splits(
    dataset: str,
    data_dir: Path | None = None,
    *,
    val_size: int = 12_000,
    train_size: int | None = None,
    seed: int = 0,
    download: bool = True,
    device: torch.device | str = "cpu",
) -> Splits:
    """The seeded, stratified train/validation split of the training files.

    `train_size` takes a stratified subset of the training part (the validation part stays
    as it is), for quick studies.
    """
    images, labels = _read_split(dataset, data_dir or default_data_dir(), "train", download)
    classes = len(DATASETS[dataset][1])
    # A stratified split needs every class on both sides of it.
    if not classes <= val_size <= len(labels) - classes:
        raise DataError(
            f"--val-size must be between {classes} (one image per class) and "
            f"{len(labels) - classes} for {dataset}, got {val_size}"
        )
    train_idx, val_idx = train_test_split(
        np.arange(len(labels)), test_size=val_size, stratify=labels, random_state=seed
    )
    if train_size is not None and train_size < len(train_idx):
        if train_size < classes:
            raise DataError(f"--train-size must be at least the number of classes: {train_size}")
        train_idx, _ = train_test_split(
            train_idx, train_size=train_size, stratify=labels[train_idx], random_state=seed
        )
    return Splits(
        dataset,
        _to_images(images[np.sort(train_idx)], device),
        torch.from_numpy(labels[np.sort(train_idx)]).long().to(device),
        _to_images(images[np.sort(val_idx)], device),
        torch.from_numpy(labels[np.sort(val_idx)]).long().to(device),
    )


def load_test(
    dataset: str,
    data_dir: Path | None = None,
    *,
    download: bool = True,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The sealed test split. Only promotion may call this."""
    images, labels = _read_split(dataset, data_dir or default_data_dir(), "test", download)
    return _to_images(images, device), torch.from_numpy(labels).long().to(device)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # a truncated or corrupt .gz among them
        raise DataError(f"cannot read {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: header says {shape}, found {data.size} bytes")
    return data.reshape(shape).copy()  # writable, so torch can own it


def _read_split(dataset: str, data_dir: Path, split: str, download: bool) -> tuple:
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}")
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} is a file; give the folder that holds the data")
    paths = _find(dataset, data_dir, split)
    if paths is None:
        _refuse_loose_files(dataset, data_dir, split)
        if download:
            _download(dataset, data_dir, split)
            paths = _find(dataset, data_dir, split)
    if paths is None:
        raise DataError(_missing_message(dataset, data_dir, split))
    images, labels = (read_idx(p) for p in paths)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise DataError(f"{paths[0]} and {paths[1]} do not hold matching 28x28 images and labels")
    return images, labels


def _refuse_loose_files(dataset: str, data_dir: Path, split: str) -> None:
    """IDX files lying in the data folder itself could be Fashion-MNIST or MNIST: both use the
    same names and shapes. Say so rather than guess."""
    loose = [data_dir / f"{stem}{ext}" for stem in _FILES[split] for ext in (".gz", "")]
    found = [p.name for p in loose if p.is_file()]
    if found:
        raise DataError(
            f"{data_dir} holds {', '.join(found)} directly: Fashion-MNIST and MNIST use the "
            f"same file names, so vae-tune cannot tell which dataset they are. Move them into "
            f"{data_dir / dataset} (or {data_dir / 'mnist'} for MNIST)."
        )


def _candidate_dirs(dataset: str, data_dir: Path) -> list[Path]:
    # Not the data folder itself: Fashion-MNIST and MNIST files have the same names and
    # shapes, so files lying there could be either.
    return [data_dir / dataset, data_dir / DATASETS[dataset][0] / "raw"]


def _find(dataset: str, data_dir: Path, split: str) -> tuple[Path, Path] | None:
    for folder in _candidate_dirs(dataset, data_dir):
        found = []
        for stem in _FILES[split]:
            matches = [folder / name for name in (f"{stem}.gz", stem) if (folder / name).is_file()]
            if not matches:
                break
            found.append(matches[0])
        else:
            return found[0], found[1]
    return None


def _download(dataset: str, data_dir: Path, split: str) -> None:
    """torchvision's download into its own layout (`<dir>/<Name>/raw`), checked by MD5."""
    import torchvision.datasets  # imported here: it is only needed when files are missing

    name = DATASETS[dataset][0]
    made = data_dir if not data_dir.exists() else data_dir / name  # removed if this fails
    existed = made.exists()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        getattr(torchvision.datasets, name)(str(data_dir), download=True)
    except Exception as exc:  # offline, DNS, HTTP or checksum errors all mean "not available"
        if not existed:
            shutil.rmtree(made, ignore_errors=True)
        raise DataError(
            f"{_missing_message(dataset, data_dir, split)}\nDownload failed: {exc}"
        ) from exc


def _missing_message(dataset: str, data_dir: Path, split: str) -> str:
    files = ", ".join(f"{stem}.gz" for stem in _FILES[split])
    where = " or ".join(str(d) for d in _candidate_dirs(dataset, data_dir))
    return (
        f"{dataset} data not found: expected {files} in {where}. "
        "Point --data-dir or VAE_TUNE_DATA at the folder that holds them."
    )


def _to_images(images: np.ndarray, device: torch.device | str) -> torch.Tensor:
    # uint8 -> float32 once, on the target device: the training loop then only indexes.
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return x.unsqueeze(1).float().div_(255.0)
