"""Small pictures that compare autoencoders by eye, as PNG bytes.

A trial's picture shows three 4 x 4 blocks side by side (nearly square, so optuna-dashboard's
artifact card shows it whole): the same 16 validation images, their reconstructions and, for a
VAE, 16 decodings of a fixed prior noise. The top-k picture puts the reconstructions of several
trials in rows under one row of the originals, each labelled. Made with numpy and Pillow (no
matplotlib): a trial pays milliseconds for its picture.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from vae_tune.models import Autoencoder, ConvVAE

SHOWN = 16  # images per row (a trial's picture: per 4 x 4 block)
SIDE = 4
TILE, GAP, SCALE = 28, 2, 2  # pixels of an image, between images; the whole picture is scaled
BLOCK_GAP = 10  # pixels between a trial picture's blocks
LABEL_WIDTH = 150  # pixels (after scaling) for a row's label in the top-k picture


@torch.no_grad()
def trial_rows(model: Autoencoder, images: torch.Tensor) -> list[np.ndarray]:
    """Originals, reconstructions and (a VAE's) prior samples, as rows of 8-bit images."""
    model.eval()
    rows = [images[:SHOWN], model(images[:SHOWN])]
    if isinstance(model, ConvVAE):
        noise = torch.randn(SHOWN, model.cfg.latent_dim, generator=torch.Generator().manual_seed(0))
        rows.append(model.decode(noise.to(images.device)))
    return [_to_uint8(row) for row in rows]


def strip_png(rows: list[np.ndarray]) -> bytes:
    """Rows of images, one above the other, as PNG."""
    height = len(rows) * (TILE + GAP) + GAP
    width = SHOWN * (TILE + GAP) + GAP
    canvas = np.full((height, width), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row[:SHOWN]):
            top, left = GAP + r * (TILE + GAP), GAP + c * (TILE + GAP)
            canvas[top : top + TILE, left : left + TILE] = image
    return _png(
        Image.fromarray(canvas).resize((width * SCALE, height * SCALE), Image.Resampling.NEAREST)
    )


def trial_png(rows: list[np.ndarray]) -> bytes:
    """Each row of 16 images as a 4 x 4 block, the blocks side by side."""
    block = SIDE * (TILE + GAP) + GAP
    canvas = np.full((block, len(rows) * (block + BLOCK_GAP) - BLOCK_GAP), 255, dtype=np.uint8)
    for b, row in enumerate(rows):
        for i, image in enumerate(row[:SHOWN]):
            top = GAP + (i // SIDE) * (TILE + GAP)
            left = b * (block + BLOCK_GAP) + GAP + (i % SIDE) * (TILE + GAP)
            canvas[top : top + TILE, left : left + TILE] = image
    height, width = canvas.shape
    return _png(
        Image.fromarray(canvas).resize((width * SCALE, height * SCALE), Image.Resampling.NEAREST)
    )


def read_rows(png: bytes) -> list[np.ndarray]:
    """The rows of 16 images of a picture `trial_png` made."""
    canvas = np.asarray(Image.open(io.BytesIO(png)).convert("L"))[::SCALE, ::SCALE]
    block = SIDE * (TILE + GAP) + GAP
    rows = []
    for b in range((canvas.shape[1] + BLOCK_GAP) // (block + BLOCK_GAP)):
        tiles = []
        for i in range(SHOWN):
            top = GAP + (i // SIDE) * (TILE + GAP)
            left = b * (block + BLOCK_GAP) + GAP + (i % SIDE) * (TILE + GAP)
            tiles.append(canvas[top : top + TILE, left : left + TILE])
        rows.append(np.stack(tiles))
    return rows


def topk_png(originals: np.ndarray, labelled: list[tuple[str, np.ndarray]]) -> bytes:
    """Originals on top, then one labelled row of reconstructions per trial."""
    strip = Image.open(io.BytesIO(strip_png([originals, *(row for _, row in labelled)])))
    canvas = Image.new("L", (strip.width + LABEL_WIDTH, strip.height), 255)
    canvas.paste(strip, (LABEL_WIDTH, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=15)
    row_height = (TILE + GAP) * SCALE
    for r, label in enumerate(["validation images", *(label for label, _ in labelled)]):
        draw.text((6, GAP * SCALE + r * row_height + row_height // 3), label, fill=0, font=font)
    return _png(canvas)


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    return (
        (images.detach().float().cpu().clamp(0, 1).squeeze(1).numpy() * 255)
        .round()
        .astype(np.uint8)
    )


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
