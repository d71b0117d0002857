"""`npz:PATH`: arrays in a numpy `.npz` file, read without pickle.

`x_train` and `y_train`, optionally `x_test` and `y_test` (else a share of the training arrays
is held out as the test split) and `classes` (names; else 0 to K-1). Images are uint8 (or
floats in [0, 1]) of shape (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from vae_tune.data.base import TEST, Images, Source, check_fits, check_labels, counted_classes
from vae_tune.errors import DataError


def npz_source(path: Path) -> Source:
    file = path.expanduser().resolve()
    with _open(file) as arrays:
        names = set(arrays.files)
        missing = [k for k in ("x_train", "y_train") if k not in names]
        if missing:
            raise DataError(f"{file}: no array {' or '.join(missing)} (it holds {sorted(names)})")
        if ("x_test" in names) != ("y_test" in names):
            raise DataError(f"{file}: give both x_test and y_test, or neither")
        if "classes" in names:
            classes = tuple(str(c) for c in _load(file, arrays, "classes").reshape(-1))
        else:
            count = counted_classes(f"{file} (y_train)", _load(file, arrays, "y_train"))
            classes = tuple(str(i) for i in range(count))

    def read(data_dir: Path, split: str) -> Images:
        x_key, y_key = ("x_test", "y_test") if split == TEST else ("x_train", "y_train")
        with _open(file) as arrays:
            _check_size(file, arrays, x_key)
            x = _images(file, x_key, _load(file, arrays, x_key))
            y = _load(file, arrays, y_key)
        return Images(x, check_labels(f"{file} ({y_key})", y, len(classes), len(x)))

    return Source(
        f"npz:{file}",
        classes,
        mirror=False,
        about=f"the arrays of {file}: never mirrored unless the space says train.augment: "
        "flip_shift",
        read=read,
        has_test=lambda data_dir: "x_test" in names,
    )


def _open(file: Path) -> Any:
    """The file's arrays, each read when asked for (np.load is lazy for .npz)."""
    try:
        return np.load(file, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"npz:{file}: no such file") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{file}: not a readable .npz file ({exc})") from exc


def _load(file: Path, arrays: Any, key: str) -> np.ndarray:
    try:
        return np.asarray(arrays[key])
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:  # a corrupt member
        raise DataError(f"{file}: cannot read its array {key} ({exc})") from exc


def _check_size(file: Path, arrays: Any, key: str) -> None:
    """The array's size from its header, before numpy reads it: what loading it takes, and
    the uint8 copy held for training where it is stored as floats."""
    member = f"{key}.npy" if f"{key}.npy" in arrays.zip.namelist() else key
    try:
        with arrays.zip.open(member) as stream:
            version = np.lib.format.read_magic(stream)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read(stream)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return  # np.load names what is wrong with it, when it reads the array
    count = int(np.prod(shape, dtype=object))
    need = count * dtype.itemsize + (0 if dtype == np.uint8 else count)
    shown = "x".join(str(n) for n in shape)
    check_fits(f"{file} ({key}): {shown} {dtype} images take", need)


def _images(file: Path, key: str, x: np.ndarray) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(
            f"{file} ({key}): images must be (N, H, W), (N, H, W, C) or (N, C, H, W) with C = "
            f"1 or 3, got {x.shape}"
        )
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    if np.issubdtype(x.dtype, np.floating) and x.size and x.min() >= 0.0 and x.max() <= 1.0:
        return np.ascontiguousarray(np.round(x * 255).astype(np.uint8))
    raise DataError(f"{file} ({key}): images must be uint8, or floats in [0, 1]; got {x.dtype}")
