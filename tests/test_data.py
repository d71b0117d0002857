"""Datasets from the real IDX files: split sizes, stratification, seeds, layouts, clear errors."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch

from vae_tune.data.idx import read_idx
from vae_tune.data.splits import load_splits, load_test
from vae_tune.errors import DataError


@pytest.fixture(scope="module")
def fashion(real_data: Path):
    return load_splits("fashion-mnist", real_data)


def test_default_split_is_48000_12000_stratified(fashion) -> None:
    assert fashion.train_x.shape == (48_000, 1, 28, 28)
    assert fashion.val_x.shape == (12_000, 1, 28, 28)
    assert fashion.train_x.dtype == torch.float32
    assert float(fashion.train_x.min()) >= 0.0 and float(fashion.train_x.max()) <= 1.0
    # Fashion-MNIST has 6,000 images per class: a stratified split keeps exactly 1,200 of each.
    assert torch.bincount(fashion.val_y).tolist() == [1_200] * 10
    assert torch.bincount(fashion.train_y).tolist() == [4_800] * 10
    assert fashion.classes[9] == "Ankle boot"


def test_split_is_seeded(real_data: Path, fashion) -> None:
    again = load_splits("fashion-mnist", real_data, val_size=12_000, seed=0)
    other = load_splits("fashion-mnist", real_data, val_size=12_000, seed=1)
    assert torch.equal(again.val_x, fashion.val_x)
    assert not torch.equal(other.val_x, fashion.val_x)


def test_train_subset_is_stratified_and_validation_unchanged(real_data: Path, fashion) -> None:
    small = load_splits("fashion-mnist", real_data, train_size=1_000)
    assert len(small.train_x) == 1_000
    assert torch.bincount(small.train_y).tolist() == [100] * 10
    assert torch.equal(small.val_x, fashion.val_x)


def test_mnist_and_test_split(real_data: Path) -> None:
    splits = load_splits("mnist", real_data, val_size=10_000)
    assert len(splits.train_x) == 50_000
    x, y = load_test("mnist", real_data)
    assert x.shape == (10_000, 1, 28, 28) and y.shape == (10_000,)


def test_torchvision_layout_uncompressed(tmp_path: Path, real_data: Path) -> None:
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        with gzip.open(real_data / "fashion-mnist" / f"{name}.gz") as src:
            (raw / name).write_bytes(src.read())
    splits = load_splits("fashion-mnist", tmp_path, val_size=100, train_size=100)
    reference = load_splits("fashion-mnist", real_data, val_size=100, train_size=100)
    assert torch.equal(splits.train_x, reference.train_x)


def test_missing_data_offline_names_the_expected_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_splits("fashion-mnist", tmp_path)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "fashion-mnist") in message
    assert "VAE_TUNE_DATA" in message


def test_truncated_file_is_a_clear_error(tmp_path: Path, real_data: Path) -> None:
    folder = tmp_path / "mnist"
    folder.mkdir()
    shutil.copy(real_data / "mnist" / "train-labels-idx1-ubyte.gz", folder)
    with gzip.open(real_data / "mnist" / "train-images-idx3-ubyte.gz") as src:
        (folder / "train-images-idx3-ubyte").write_bytes(src.read()[:5000])
    with pytest.raises(DataError, match="truncated"):
        read_idx(folder / "train-images-idx3-ubyte")
    with pytest.raises(DataError, match="truncated"):
        load_splits("mnist", tmp_path)
