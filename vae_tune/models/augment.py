"""Batch augmentation of image tensors on their device: no per-sample Python.

`shift` moves each image by up to two pixels in each direction (zero padding), drawn per image;
`flip_shift` also mirrors it left-right with probability 1/2: right for clothes and photographs,
wrong for digits and text (a mirrored 2 is no digit). `flip_alt` mirrors as airbench does:
each image is mirrored or not at random in the first epoch and the other way round in every
epoch after, so each image is seen both ways every two epochs instead of by chance;
`flip_alt_shift` adds the shifts. `auto` is the dataset's own choice (`data/defaults.py`),
resolved before training. Validation and test images are never augmented.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("none", "shift", "flip_shift", "flip_alt", "flip_alt_shift", "auto")
ALTERNATING = ("flip_alt", "flip_alt_shift")  # mirrored by the epoch's plan (alternating_flips)
# The augmentations that show a model mirrored images: its test images may be mirrored too.
MIRRORING = ("flip_shift", *ALTERNATING)


def augment(
    name: str,
    images: torch.Tensor,
    generator: torch.Generator,
    mirror: torch.Tensor | None = None,
) -> torch.Tensor:
    """`images` augmented by `name`. `mirror`: which of them the alternating flips mirror
    (`alternating_flips`); without it (the timing in calibrate.py) they are drawn at random,
    which costs the same."""
    if name == "none":
        return images
    if name == "auto":
        raise ValueError("train.augment: auto is resolved from the dataset before training")
    if name in ALTERNATING:
        if mirror is None:
            mirror = torch.rand(len(images), device=images.device, generator=generator) < 0.5
        images = torch.where(mirror[:, None, None, None], images.flip(3), images)
        return flip_shift(images, generator, flip=False) if name == "flip_alt_shift" else images
    return flip_shift(images, generator, flip=name == "flip_shift")


def first_flips(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Each of `n` training images' mirroring in the first epoch, drawn once per fit."""
    return torch.rand(n, device=device, generator=generator) < 0.5


def alternating_flips(first: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
    """Which images of a batch (dataset positions `index`) to mirror in `epoch` (1-based):
    their first-epoch draw in odd epochs, its opposite in even ones."""
    return first[index] ^ (epoch % 2 == 0)


def flip_shift(
    images: torch.Tensor, generator: torch.Generator, max_shift: int = 2, flip: bool = True
) -> torch.Tensor:
    """(N, C, H, W) images, each shifted (and, with `flip`, mirrored) at random."""
    n, _, h, w = images.shape
    device = images.device
    if flip:
        mirrored = torch.rand(n, device=device, generator=generator) < 0.5
        images = torch.where(mirrored[:, None, None, None], images.flip(3), images)
    padded = F.pad(images, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), device=device, generator=generator)
    rows = (torch.arange(h, device=device) + dy[:, None])[:, None, :, None]  # (N, 1, H, 1)
    cols = (torch.arange(w, device=device) + dx[:, None])[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=device)[None, :, None, None]
    return padded[batch, channel, rows, cols]
