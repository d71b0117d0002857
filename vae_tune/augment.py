"""Batch augmentation of image tensors on their device: no per-sample Python.

`flip_shift` mirrors each image left-right with probability 1/2 and shifts it by up to two
pixels in each direction (zero padding), drawn per image. Both keep a Fashion-MNIST or MNIST
image what it was; neither is applied to validation or test images.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENTATIONS = ("none", "flip_shift")


def augment(name: str, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if name == "none":
        return images
    return flip_shift(images, generator)


def flip_shift(
    images: torch.Tensor, generator: torch.Generator, max_shift: int = 2
) -> torch.Tensor:
    """(N, C, H, W) images, each flipped and shifted at random."""
    n, _, h, w = images.shape
    device = images.device
    flip = torch.rand(n, device=device, generator=generator) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(3), images)
    padded = F.pad(images, (max_shift,) * 4)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), device=device, generator=generator)
    rows = (torch.arange(h, device=device) + dy[:, None])[:, None, :, None]  # (N, 1, H, 1)
    cols = (torch.arange(w, device=device) + dx[:, None])[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=device)[None, :, None, None]
    return padded[batch, channel, rows, cols]
