"""Batch augmentation of image tensors on their device: no per-sample Python.

`shift` moves each image by up to two pixels in each direction (zero padding), drawn per image;
`flip_shift` also mirrors it left-right with probability 1/2: right for clothes and photographs,
wrong for digits and text (a mirrored 2 is no digit). `auto` is the dataset's own choice
(`datasets/defaults.py`), resolved before training. Validation and test images are never
augmented.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("none", "shift", "flip_shift", "auto")


def augment(name: str, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if name == "none":
        return images
    if name == "auto":
        raise ValueError("train.augment: auto is resolved from the dataset before training")
    return flip_shift(images, generator, flip=name == "flip_shift")


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
