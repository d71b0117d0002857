"""Data that once ended in a traceback or worse: npz labels that are no class numbers, folders
with a decompression bomb, archive litter or more images than memory holds. Each is one message
naming the file, through the real command line and the real readers, and nothing is written."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import invoke
from vae_tune.data.catalog import source


def write_folder(root: Path, n: int = 20, classes: int = 2) -> Path:
    """`root/train/classK/NNNNN.png`: n small grayscale images per class."""
    rng = np.random.default_rng(0)
    for label in range(classes):
        folder = root / "train" / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
            Image.fromarray(pixels, "L").save(folder / f"{label * n + i:05d}.png")
    return root


def write_png_bomb(path: Path, side: int = 20_000) -> None:
    """A PNG whose header says 20,000 x 20,000 pixels (twice Pillow's bomb limit) in 100 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


def write_npz(path: Path, labels: np.ndarray) -> Path:
    x = np.random.default_rng(0).integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=labels)
    return path


def refused(tmp_path: Path, dataset: str, env: dict[str, str] | None = None) -> str:
    """`vae-tune study ae` on the dataset: its one-line error, after checking that it exited 2
    with no traceback and wrote nothing into the project folder."""
    project = tmp_path / "project"
    project.mkdir()
    result = invoke(project, "study", "ae", "--dataset", dataset, "--val-size", "4", env=env)
    output = " ".join(result.output.split())
    assert result.exit_code == 2, output
    assert "Traceback" not in output and not isinstance(result.exception, Exception)
    assert list(project.iterdir()) == [], "something was written"
    return output


NPZ_LABELS = {
    "string labels": (
        np.array(["cat", "dog"] * 10),
        "labels must be whole numbers 0 to K-1 (one per class), got strings",
    ),
    "a NaN label": (
        np.array([0.0, 1.0] * 9 + [np.nan, 1.0]),
        "label nan is not a whole number",
    ),
    "a stray label of 2**40": (
        np.array([0, 1, 2] * 6 + [2**40, 1]),
        "labels must number the classes 0 to K-1 with an image in each; the largest label is "
        "1099511627776 but only 4 distinct labels are used (none is 3)",
    ),
}


@pytest.mark.parametrize("case", NPZ_LABELS)
def test_npz_labels_that_number_no_classes_are_one_message(tmp_path: Path, case: str) -> None:
    labels, message = NPZ_LABELS[case]
    path = write_npz(tmp_path / "arrays.npz", labels)
    output = refused(tmp_path, f"npz:{path}")
    assert f"{path} (y_train): {message}" in output


def test_an_npz_larger_than_the_memory_limit_is_refused_before_it_is_read(
    tmp_path: Path,
) -> None:
    path = write_npz(tmp_path / "arrays.npz", np.array([0, 1] * 20))
    output = refused(tmp_path, f"npz:{path}", {"VAE_TUNE_MEMORY_LIMIT": "10K"})
    assert (
        f"{path} (x_train): 40x28x28 uint8 images take 30.6 KiB in memory, more than "
        "VAE_TUNE_MEMORY_LIMIT=10K (10.0 KiB)"
    ) in output


def test_a_decompression_bomb_in_a_folder_is_one_message(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "pictures")
    bomb = root / "train" / "class1" / "00030.png"
    write_png_bomb(bomb)
    output = refused(tmp_path, f"folder:{root}")
    assert f"{bomb}: refused, a likely decompression bomb" in output


def test_a_folder_larger_than_the_memory_limit_is_refused_before_decoding(
    tmp_path: Path,
) -> None:
    root = write_folder(tmp_path / "pictures")
    # A broken image after the first: it would be the error if the images were decoded first.
    (root / "train" / "class1" / "00030.png").write_bytes(b"\x89PNG not really")
    output = refused(tmp_path, f"folder:{root}", {"VAE_TUNE_MEMORY_LIMIT": "10K"})
    assert (
        f"{root / 'train'}: 40 images of 1x28x28 bytes each take 30.6 KiB in memory, more "
        "than VAE_TUNE_MEMORY_LIMIT=10K (10.0 KiB)"
    ) in output


def test_archive_litter_and_hidden_folders_are_no_classes(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "pictures")
    train = root / "train"
    # What unzipping a macOS archive and browsing it in Jupyter leave behind.
    (train / "__MACOSX" / "class0").mkdir(parents=True)
    (train / "__MACOSX" / "class0" / "._00000.png").write_bytes(b"\0\5\26\7 AppleDouble")
    (train / ".ipynb_checkpoints").mkdir()
    (train / "class0" / "._00000.png").write_bytes(b"\0\5\26\7 AppleDouble")
    found = source(f"folder:{root}")
    assert found.classes == ("class0", "class1")
    images = found.read(tmp_path, "train")
    assert images.x.shape == (40, 1, 28, 28) and images.y.tolist() == [0] * 20 + [1] * 20
