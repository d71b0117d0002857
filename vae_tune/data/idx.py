"""Fashion-MNIST and MNIST: the original IDX files.

Two layouts: the shared data folder's (`<dir>/fashion-mnist/*.gz`) and torchvision's
(`<dir>/FashionMNIST/raw/*`), gzipped or not. Files lying in `<dir>` itself are refused:
Fashion-MNIST's and MNIST's share their names. Missing files are downloaded with torchvision
when online.
"""

from __future__ import annotations

import gzip
import shutil
import zlib
from pathlib import Path

import numpy as np

from vae_tune.data.base import TEST, TRAIN, Images, Source, check_labels
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
FILES = {
    TRAIN: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    TEST: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


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


def idx_source(
    name: str, torchvision_name: str, classes: tuple[str, ...], mirror: bool, about: str
) -> Source:
    def read(data_dir: Path, split: str) -> Images:
        paths = _find(name, torchvision_name, data_dir, split)
        if paths is None:
            _refuse_loose_files(name, data_dir, split)
            _download(name, torchvision_name, data_dir, split)
            paths = _find(name, torchvision_name, data_dir, split)
        if paths is None:
            raise DataError(_missing_message(name, torchvision_name, data_dir, split))
        images, labels = (read_idx(p) for p in paths)
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(f"{paths[0]} does not hold 28x28 images: {images.shape}")
        return Images(images[:, None], check_labels(paths[1], labels, len(classes), len(images)))

    return Source(name, classes, mirror, about, read)


def _candidate_dirs(name: str, torchvision_name: str, data_dir: Path) -> list[Path]:
    return [data_dir / name, data_dir / torchvision_name / "raw"]


def _find(name: str, tv: str, data_dir: Path, split: str) -> tuple[Path, Path] | None:
    for folder in _candidate_dirs(name, tv, data_dir):
        found = []
        for stem in FILES[split]:
            matches = [folder / n for n in (f"{stem}.gz", stem) if (folder / n).is_file()]
            if not matches:
                break
            found.append(matches[0])
        else:
            return found[0], found[1]
    return None


def _refuse_loose_files(name: str, data_dir: Path, split: str) -> None:
    """IDX files lying in the data folder itself could be Fashion-MNIST or MNIST: both use the
    same names and shapes. Say so rather than guess."""
    loose = [data_dir / f"{stem}{ext}" for stem in FILES[split] for ext in (".gz", "")]
    found = [p.name for p in loose if p.is_file()]
    if found:
        raise DataError(
            f"{data_dir} holds {', '.join(found)} directly: Fashion-MNIST and MNIST use the "
            f"same file names, so vae-tune cannot tell which dataset they are. Move them into "
            f"{data_dir / name} (or {data_dir / 'mnist'} for MNIST)."
        )


def _download(name: str, torchvision_name: str, data_dir: Path, split: str) -> None:
    """torchvision's download into its own layout (`<dir>/<Name>/raw`), checked by MD5."""
    import torchvision.datasets  # imported here: it is only needed when files are missing

    made = data_dir if not data_dir.exists() else data_dir / torchvision_name
    existed = made.exists()  # removed again if the download fails: nothing half-written
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        getattr(torchvision.datasets, torchvision_name)(str(data_dir), download=True)
    except Exception as exc:  # offline, DNS, HTTP or checksum errors all mean "not available"
        if not existed:
            shutil.rmtree(made, ignore_errors=True)
        raise DataError(
            f"{_missing_message(name, torchvision_name, data_dir, split)}\nDownload failed: {exc}"
        ) from exc


def _missing_message(name: str, tv: str, data_dir: Path, split: str) -> str:
    files = ", ".join(f"{stem}.gz" for stem in FILES[split])
    where = " or ".join(str(d) for d in _candidate_dirs(name, tv, data_dir))
    return (
        f"{name} data not found: expected {files} in {where}. "
        "Point --data-dir or VAE_TUNE_DATA at the folder that holds them."
    )


FASHION_MNIST = idx_source(
    "fashion-mnist",
    "FashionMNIST",
    FASHION_CLASSES,
    mirror=True,
    about="Zalando's 28x28 grayscale clothes, 10 classes; a mirrored garment is still one",
)
MNIST = idx_source(
    "mnist",
    "MNIST",
    tuple(str(d) for d in range(10)),
    mirror=False,
    about="handwritten digits, 28x28 grayscale; never mirrored (a mirrored 2 is no digit)",
)
