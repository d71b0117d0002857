"""`folder:PATH`: a folder of PNG or JPEG images, one subfolder per class.

`PATH/train/<class>/*` with `PATH/test/<class>/*` beside it, or `PATH/<class>/*` alone, in which
case a seeded, stratified share of it is held out as the test split (see `splits.py`). Images
lying in `PATH` (or `PATH/train`) with no class folders make an unlabelled dataset, for the AE
and VAE stages. Every image must have the same size and mode (8-bit grayscale or RGB).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vae_tune.data.base import TEST, TRAIN, Images, Source, check_fits
from vae_tune.errors import DataError

SUFFIXES = {".png", ".jpg", ".jpeg"}
UNLABELLED = "unlabelled"  # the one class of a folder of images without class folders
MODES = {"L": 1, "RGB": 3}


def folder_source(path: Path) -> Source:
    root = path.expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"folder:{path}: no such folder")
    train = root / TRAIN if (root / TRAIN).is_dir() else root
    folders = sorted(
        p.name for p in train.iterdir() if p.is_dir() and p.name != TEST and not _hidden(p.name)
    )
    classes = tuple(folders) or (UNLABELLED,)

    def read(data_dir: Path, split: str) -> Images:
        return read_folder(root / TEST if split == TEST else train, classes)

    return Source(
        f"folder:{root}",
        classes,
        mirror=False,
        about=f"the images in {root}: never mirrored unless the space says train.augment: "
        "flip_shift",
        read=read,
        has_test=lambda data_dir: (root / TEST).is_dir(),
    )


def read_folder(folder: Path, classes: tuple[str, ...]) -> Images:
    """Every image of the class subfolders, labelled by its folder's place among them."""
    if classes == (UNLABELLED,):  # the images in the folder itself
        files = _images_in(folder)
        if not files:
            raise DataError(f"{folder}: no PNG or JPEG images and no class folders")
        x = _stack(folder, files)
        return Images(x, np.zeros(len(x), dtype=np.int64))
    labelled: list[tuple[str, int, Path]] = []
    for label, name in enumerate(classes):
        files = _images_in(folder / name)
        if not files:
            raise DataError(f"{folder / name}: a class folder with no PNG or JPEG images")
        labelled += [(path.name, label, path) for path in files]
    # In file-name order across the classes: images numbered as in the dataset they came from
    # keep its order, so the same seeded split takes the same images.
    labelled.sort(key=lambda item: (item[0], item[1]))
    labels = np.array([label for _, label, _ in labelled], dtype=np.int64)
    return Images(_stack(folder, [path for _, _, path in labelled]), labels)


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: no such class folder (the training classes are its names)")
    return sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in SUFFIXES and not _hidden(p.name) and p.is_file()
    )


def _hidden(name: str) -> bool:
    """What archives and file managers leave beside the images: hidden folders and files
    (`.ipynb_checkpoints`, macOS's `._photo.png`), and the `__MACOSX` folder of a zip."""
    return name.startswith(".") or name == "__MACOSX"


def _stack(folder: Path, files: list[Path]) -> np.ndarray:
    """The images as uint8 (N, C, H, W); the first one sets the size and mode for all, and
    whether they all fit in memory is checked from its header, before anything is decoded."""
    first = None
    out: np.ndarray | None = None
    for i, path in enumerate(files):
        try:
            with Image.open(path) as image:  # reads the header only
                mode, size = image.mode, image.size
                if first is None:
                    first = (path, mode, size)
                    out = _allocate(folder, path, len(files), mode, size)
                elif (mode, size) != first[1:]:
                    raise DataError(
                        f"{path}: {mode} {size[0]}x{size[1]}, but {first[0]} is {first[1]} "
                        f"{first[2][0]}x{first[2][1]}: every image of a dataset has one size "
                        "and mode"
                    )
                image.load()
                pixels = np.asarray(image)
        except Image.DecompressionBombError as exc:  # no OSError: Pillow's own refusal
            raise DataError(f"{path}: refused, a likely decompression bomb ({exc})") from None
        except (OSError, UnidentifiedImageError, SyntaxError) as exc:
            raise DataError(f"{path}: not a readable image ({exc})") from exc
        assert out is not None
        out[i] = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    assert out is not None
    return out


def _allocate(folder: Path, path: Path, count: int, mode: str, size: tuple[int, int]) -> np.ndarray:
    if mode not in MODES:
        raise DataError(f"{path}: mode {mode}; vae-tune reads 8-bit grayscale (L) or RGB")
    channels, (width, height) = MODES[mode], size
    check_fits(
        f"{folder}: {count} images of {channels}x{height}x{width} bytes each take",
        count * channels * height * width,
    )
    return np.empty((count, channels, height, width), dtype=np.uint8)
