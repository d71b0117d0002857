"""Your own images: SVHN's .mat, CIFAR-10's python batches, a folder of PNGs and an npz, each
written by the test in its official layout and read by the real loading code; bad data is one
clear message naming the file."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from tests.helpers import invoke, load_study
from vae_tune.data.catalog import short_name, source
from vae_tune.data.defaults import binary_like, data_defaults
from vae_tune.data.idx import FASHION_MNIST
from vae_tune.data.splits import HOLDOUT, holdout_of, load_splits, load_test
from vae_tune.errors import ConfigError, DataError


def images(n: int, channels: int = 3, side: int = 32, classes: int = 10, seed: int = 0) -> tuple:
    """Images a model can tell apart: each class its own brightness, plus seeded noise."""
    y = np.arange(n) % classes
    base = (y[:, None, None, None] * 23 % 256).astype(np.float32)
    noise = np.random.default_rng(seed).integers(0, 40, (n, channels, side, side))
    return np.clip(base + noise, 0, 255).astype(np.uint8), y


def write_svhn(root: Path, n: int = 300, test_n: int = 100) -> Path:
    folder = root / "svhn"
    folder.mkdir(parents=True)
    for seed, (split, count) in enumerate((("train", n), ("test", test_n))):
        x, y = images(count, seed=seed)
        labels = np.where(y == 0, 10, y)  # SVHN writes the digit 0 as 10
        scipy.io.savemat(
            folder / f"{split}_32x32.mat",
            {"X": x.transpose(2, 3, 1, 0), "y": labels[:, None].astype(np.uint8)},
        )
    return root


def write_cifar(root: Path, per_batch: int = 60, test_n: int = 100) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, count in [
        *((f"data_batch_{i}", per_batch) for i in range(1, 6)),
        ("test_batch", test_n),
    ]:
        x, y = images(count)
        batch = {
            b"batch_label": name.encode(),
            b"labels": y.tolist(),
            b"data": x.reshape(count, -1),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"airplane"] * 10}, f)
    return root


def write_folder(
    root: Path,
    n: int = 300,
    test_n: int = 100,
    channels: int = 3,
    side: int = 32,
    classes: int = 10,
) -> Path:
    mode = "RGB" if channels == 3 else "L"
    for split, count in (("train", n), ("test", test_n)):
        x, y = images(count, channels, side, classes)
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = image.transpose(1, 2, 0) if channels == 3 else image[0]
            Image.fromarray(pixels, mode).save(folder / f"{i:05d}.png")
    return root


def write_npz(path: Path, n: int = 300, test_n: int = 100) -> Path:
    x, y = images(n)
    xt, yt = images(test_n)
    np.savez(
        path, x_train=x.transpose(0, 2, 3, 1), y_train=y, x_test=xt.transpose(0, 2, 3, 1), y_test=yt
    )
    return path


def test_svhn_mat_files_read_with_ten_for_zero(tmp_path: Path) -> None:
    write_svhn(tmp_path)
    splits = load_splits("svhn", tmp_path, val_size=50)
    assert splits.image_shape == (3, 32, 32) and len(splits.train_x) == 250
    assert set(splits.train_y.tolist()) == set(range(10)) and not splits.mirror
    x, y = load_test("svhn", tmp_path)
    expected, labels = images(100, seed=1)
    assert torch.equal(y, torch.from_numpy(labels))
    assert torch.equal((x * 255).round().byte(), torch.from_numpy(expected))


def test_cifar_batches_read_without_running_pickled_code(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    splits = load_splits("cifar10", tmp_path, val_size=50)
    assert splits.image_shape == (3, 32, 32) and len(splits.train_x) == 250 and splits.mirror
    assert splits.classes[0] == "airplane"
    evil = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    evil.write_bytes(pickle.dumps({b"data": __import__("os").system}))
    with pytest.raises(DataError, match=r"data_batch_1.*not part of a CIFAR batch"):
        load_splits("cifar10", tmp_path, val_size=50)


def test_a_folder_of_pngs_with_a_test_folder(tmp_path: Path) -> None:
    write_folder(tmp_path / "pictures")
    name = f"folder:{tmp_path / 'pictures'}"
    splits = load_splits(name, val_size=50)
    assert splits.classes == tuple(f"class{i}" for i in range(10))
    assert splits.image_shape == (3, 32, 32) and holdout_of(name) is None
    assert short_name(name) == "pictures"
    x, _ = load_test(name)
    assert len(x) == 100


def test_a_folder_without_a_test_folder_holds_one_out_stratified(tmp_path: Path) -> None:
    write_folder(tmp_path / "pics", n=700, test_n=0, channels=1, side=28)
    assert not (tmp_path / "pics" / "test").exists()
    name = f"folder:{tmp_path / 'pics'}"
    assert holdout_of(name) == HOLDOUT
    splits = load_splits(name, val_size=100)
    x, y = load_test(name)
    assert len(x) == 100 and len(splits.train_x) == 500  # 700 = 500 + 100 validation + 100 test
    assert torch.bincount(y).tolist() == [10] * 10
    seen = {tuple(row) for row in (splits.train_x.flatten(1) * 255).round().byte().tolist()}
    assert not seen & {tuple(row) for row in (x.flatten(1) * 255).round().byte().tolist()}
    again, _ = load_test(name)
    assert torch.equal(again, x), "the hold-out does not move"


def test_an_npz_of_channels_last_arrays(tmp_path: Path) -> None:
    name = f"npz:{write_npz(tmp_path / 'arrays.npz')}"
    splits = load_splits(name, val_size=50)
    assert splits.image_shape == (3, 32, 32) and splits.classes == tuple(map(str, range(10)))
    assert len(load_test(name)[0]) == 100 and short_name(name) == "arrays"


def test_auto_defaults_follow_the_data(tmp_path: Path, real_data: Path) -> None:
    fixed = {"train.augment": "auto", "model.likelihood": "auto"}
    mnist = load_splits("mnist", real_data, train_size=1000, val_size=100)
    fashion = load_splits("fashion-mnist", real_data, train_size=1000, val_size=100)
    assert binary_like(mnist.train_x) and not binary_like(fashion.train_x)
    assert data_defaults(fixed, mnist) == {
        "train.augment": "shift",
        "model.likelihood": "bernoulli",
    }
    assert data_defaults(fixed, fashion) == {
        "train.augment": "flip_alt_shift",
        "model.likelihood": "gaussian",
    }
    with pytest.raises(ConfigError, match=r"model\.likelihood: bernoulli fits binary-like"):
        data_defaults({"model.likelihood": "bernoulli"}, fashion)


def bad_folder(tmp_path: Path, case: str) -> tuple[Path, str]:
    root = write_folder(tmp_path / case, n=40, test_n=20, channels=1, side=28, classes=2)
    first = root / "train" / "class0" / "00000.png"
    if case == "mixed sizes":
        Image.new("L", (30, 30)).save(first)
        return root, "every image of a dataset has one size and mode"
    if case == "mixed modes":
        Image.new("RGB", (28, 28)).save(first)
        return root, "every image of a dataset has one size and mode"
    if case == "empty class":
        (root / "train" / "class2").mkdir()
        return root, "class2: a class folder with no PNG or JPEG images"
    if case == "class of one image":
        for split in ("train", "test"):
            (root / split / "class2").mkdir()
            Image.new("L", (28, 28)).save(root / split / "class2" / "00000.png")
        return root, "class 'class2' has 1 image(s), too few to appear on both sides"
    if case == "corrupt image":
        first.write_bytes(b"\x89PNG not really")
        return root, "00000.png: not a readable image"
    assert case == "palette image"
    Image.new("P", (28, 28)).save(first)
    return root, "mode P; vae-tune reads 8-bit grayscale (L) or RGB"


@pytest.mark.parametrize(
    "case",
    [
        "mixed sizes",
        "mixed modes",
        "empty class",
        "class of one image",
        "corrupt image",
        "palette image",
    ],
)
def test_a_bad_folder_is_one_clear_error_and_nothing_is_written(tmp_path: Path, case: str) -> None:
    root, message = bad_folder(tmp_path, case)
    project = tmp_path / "project"
    project.mkdir()
    result = invoke(project, "study", "ae", "--dataset", f"folder:{root}", "--val-size", "10")
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert list(project.iterdir()) == []


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((4, 28, 28), np.uint8)}, "no array x_train or y_train"),
        (
            {"x_train": np.zeros((4, 28, 28), np.uint8), "y_train": np.zeros(3, int)},
            "4 images but 3 labels",
        ),
        (
            {
                "x_train": np.zeros((3, 28, 28), np.uint8),
                "y_train": np.array([0, 1, 7]),
                "classes": np.array(["a", "b"]),
            },
            "label 7 is out of range: 2 classes",
        ),
        (
            {"x_train": np.zeros((3, 28, 28), np.uint8), "y_train": np.array([0, -1, 1])},
            "label -1 is out of range",
        ),
        (
            {"x_train": np.full((3, 5, 28, 28), 2.0), "y_train": np.zeros(3, int)},
            "images must be (N, H, W), (N, H, W, C) or (N, C, H, W)",
        ),
    ],
)
def test_bad_npz_arrays_name_the_file(tmp_path: Path, arrays: dict, message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as info:
        load_splits(f"npz:{path}", val_size=1)
    assert str(path) in str(info.value) and message in str(info.value)


def test_a_mat_file_in_another_layout_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "svhn"
    folder.mkdir()
    scipy.io.savemat(folder / "train_32x32.mat", {"X": np.zeros((10, 3, 32, 32), np.uint8)})
    with pytest.raises(DataError, match=r"train_32x32\.mat: expected arrays X and y"):
        load_splits("svhn", tmp_path, val_size=10)
    scipy.io.savemat(
        folder / "train_32x32.mat", {"X": np.zeros((10, 3, 32, 32), np.uint8), "y": np.ones(10)}
    )
    with pytest.raises(DataError, match=r"X must be uint8 \(height, width, 3, N\)"):
        load_splits("svhn", tmp_path, val_size=10)


FORMATS = {
    "svhn": lambda root: ("svhn", ["--data-dir", str(write_svhn(root / "data"))]),
    "cifar10": lambda root: ("cifar10", ["--data-dir", str(write_cifar(root / "data"))]),
    "folder": lambda root: (f"folder:{write_folder(root / 'pictures')}", []),
    "npz": lambda root: (f"npz:{write_npz(root / 'arrays.npz')}", []),
}
TINY = ["--epochs", "1", "--n-trials", "1", "--val-size", "60", "--pruner", "none"]


@pytest.mark.slow
@pytest.mark.parametrize("layout", sorted(FORMATS))
def test_every_stage_studies_and_promotes_on_each_layout(tmp_path: Path, layout: str) -> None:
    dataset, where = FORMATS[layout](tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    data = ["--dataset", dataset, *where]
    for args in (
        ["study", "ae", *TINY, *data],
        ["promote", "ae", *data],
        ["study", "vae", *TINY, *data],
        ["promote", "vae", "--iwae-k", "4", *data],
        ["study", "mlp", *TINY, *data],
        ["promote", "mlp", *data],
    ):
        result = invoke(project, *args)
        assert result.exit_code == 0, result.output
    assert "3x32x32" in result.output or "test_accuracy" in result.output
    report = (project / "reports" / f"{short_name(dataset)}.md").read_text()
    assert f"mlp-ae-{short_name(dataset)}" in report


def sorted_rows(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(len(x), -1)
    return flat[np.lexsort(flat.T[::-1])]


@pytest.mark.slow
def test_fashion_mnist_as_a_folder_of_pngs_is_fashion_mnist(
    tmp_path: Path, real_data: Path
) -> None:
    """The IDX images written as PNGs in class folders load back byte for byte, and the same
    study on them starts where the IDX study starts."""
    root = tmp_path / "fashion"
    for split in ("train", "test"):
        read = FASHION_MNIST.read(real_data, split)
        for label in range(10):
            (root / split / f"{label}").mkdir(parents=True)
        for i, (image, label) in enumerate(zip(read.x, read.y, strict=True)):
            Image.fromarray(image[0], "L").save(root / split / f"{label}" / f"{i:05d}.png")
        back = source(f"folder:{root}").read(real_data, split)
        assert back.x.shape == read.x.shape
        assert np.array_equal(sorted_rows(back.x), sorted_rows(read.x)), split
    # The PNGs are named by their place in the IDX file: read in file-name order, the same
    # seeded split takes the same images, and the first trial trains on them alike.
    subset = ["--train-size", "2000", "--val-size", "1000", "--epochs", "1", "--n-trials", "1"]
    losses = []
    for name, dataset in (("idx", "fashion-mnist"), ("png", f"folder:{root}")):
        project = tmp_path / name
        project.mkdir()
        result = invoke(project, "study", "ae", "--dataset", dataset, *subset)
        assert result.exit_code == 0, result.output
        study_name = "ae-fashion-mnist" if name == "idx" else "ae-fashion"
        losses.append(load_study(project, study_name).trials[0].value)
    assert losses[1] == pytest.approx(losses[0], rel=0.02)


@pytest.mark.slow
def test_a_64_pixel_rgb_folder_runs_the_pipeline_at_its_least_budget(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "big", n=600, test_n=150, channels=3, side=64, classes=3)
    project = tmp_path / "project"
    project.mkdir()
    result = invoke(
        project, "pipeline", "--budget", "least", "--dataset", f"folder:{root}", "--val-size", "150"
    )
    assert result.exit_code == 0, result.output
    assert "3x64x64" in result.output and "test_accuracy" in result.output
    assert (project / "reports" / "big.md").is_file()
