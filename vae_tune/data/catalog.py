"""The datasets `--dataset` names: Fashion-MNIST and MNIST (IDX), SVHN (.mat), CIFAR-10 (python
batches), `folder:PATH` (images in class folders) and `npz:PATH` (arrays). Each reader gives
uint8 (N, C, H, W) images at their own size and channels; `splits.py` splits them into tensors.
"""

from __future__ import annotations

from pathlib import Path

from vae_tune.data.base import TEST, TRAIN, Images, Source
from vae_tune.data.cifar import CIFAR10
from vae_tune.data.folder import folder_source
from vae_tune.data.idx import FASHION_MNIST, MNIST
from vae_tune.data.npz import npz_source
from vae_tune.data.svhn import SVHN
from vae_tune.errors import DataError

BUILT_IN = {s.name: s for s in (FASHION_MNIST, MNIST, SVHN, CIFAR10)}
NAMES = (*BUILT_IN, "folder:PATH", "npz:PATH")

__all__ = ["BUILT_IN", "NAMES", "TEST", "TRAIN", "Images", "Source", "short_name", "source"]


def source(name: str) -> Source:
    """The dataset `name` names: a built-in one, `folder:PATH` or `npz:PATH`."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    kind, _, path = name.partition(":")
    if kind == "folder" and path:
        return folder_source(Path(path))
    if kind == "npz" and path:
        return npz_source(Path(path))
    raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)}")


def short_name(name: str) -> str:
    """What study and model names call the dataset: its own name, or a folder's or file's
    name (`folder:~/photos/cats` -> `cats`), without reading it."""
    if name in BUILT_IN:
        return name
    kind, _, path = name.partition(":")
    stem = Path(path).expanduser().name
    return (Path(stem).stem if kind == "npz" else stem) or kind
