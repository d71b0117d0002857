"""Small pictures that compare autoencoders by eye, as PNG bytes.

A trial's picture shows three 4 x 4 blocks side by side (nearly square, so optuna-dashboard's
artifact card shows it whole): the same 16 validation images, their reconstructions and, for a
VAE, 16 decodings of a fixed prior noise. The top-k picture puts the reconstructions of several
trials in rows under one row of the originals, each labelled. Made with numpy and Pillow (no
matplotlib): a trial pays milliseconds for its picture. Pictures are RGB at the images' own
size (grayscale images are drawn gray); a trial picture records its tile size in a PNG text
chunk, so its rows can be read back for the top-k picture.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from vae_tune.models.nets import Autoencoder, ConvVAE

SHOWN = 16  # images per row (a trial's picture: per 4 x 4 block)
SIDE = 4
GAP, SCALE = 2, 2  # pixels between images; the whole picture is scaled by SCALE
TILE_KEY = "vae_tune.tile"  # the PNG text chunk that holds a trial picture's "HxW"
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
    tile_h, tile_w = rows[0].shape[1:3]
    height = len(rows) * (tile_h + GAP) + GAP
    width = SHOWN * (tile_w + GAP) + GAP
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row[:SHOWN]):
            top, left = GAP + r * (tile_h + GAP), GAP + c * (tile_w + GAP)
            canvas[top : top + tile_h, left : left + tile_w] = image
    return _png(_scaled(canvas))


def trial_png(rows: list[np.ndarray]) -> bytes:
    """Each row of 16 images as a 4 x 4 block, the blocks side by side."""
    tile_h, tile_w = rows[0].shape[1:3]
    block_h, block_w = SIDE * (tile_h + GAP) + GAP, SIDE * (tile_w + GAP) + GAP
    width = len(rows) * (block_w + BLOCK_GAP) - BLOCK_GAP
    canvas = np.full((block_h, width, 3), 255, dtype=np.uint8)
    for b, row in enumerate(rows):
        for i, image in enumerate(row[:SHOWN]):
            top = GAP + (i // SIDE) * (tile_h + GAP)
            left = b * (block_w + BLOCK_GAP) + GAP + (i % SIDE) * (tile_w + GAP)
            canvas[top : top + tile_h, left : left + tile_w] = image
    info = PngImagePlugin.PngInfo()
    info.add_text(TILE_KEY, f"{tile_h}x{tile_w}")
    return _png(_scaled(canvas), info)


def read_rows(png: bytes) -> list[np.ndarray]:
    """The rows of 16 images (N, H, W, 3) of a picture `trial_png` made."""
    image = Image.open(io.BytesIO(png))
    tile = getattr(image, "text", {}).get(TILE_KEY, "28x28")  # 28x28: pictures before 0.3
    tile_h, tile_w = (int(side) for side in tile.split("x"))
    canvas = np.asarray(image.convert("RGB"))[::SCALE, ::SCALE]
    block_w = SIDE * (tile_w + GAP) + GAP
    rows = []
    for b in range((canvas.shape[1] + BLOCK_GAP) // (block_w + BLOCK_GAP)):
        tiles = []
        for i in range(SHOWN):
            top = GAP + (i // SIDE) * (tile_h + GAP)
            left = b * (block_w + BLOCK_GAP) + GAP + (i % SIDE) * (tile_w + GAP)
            tiles.append(canvas[top : top + tile_h, left : left + tile_w])
        rows.append(np.stack(tiles))
    return rows


def topk_png(originals: np.ndarray, labelled: list[tuple[str, np.ndarray]]) -> bytes:
    """Originals on top, then one labelled row of reconstructions per trial."""
    strip = Image.open(io.BytesIO(strip_png([originals, *(row for _, row in labelled)])))
    canvas = Image.new("RGB", (strip.width + LABEL_WIDTH, strip.height), (255, 255, 255))
    canvas.paste(strip, (LABEL_WIDTH, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=15)
    row_height = (originals.shape[1] + GAP) * SCALE
    for r, label in enumerate(["validation images", *(label for label, _ in labelled)]):
        draw.text((6, GAP * SCALE + r * row_height + row_height // 3), label, fill=0, font=font)
    return _png(canvas)


def _scaled(canvas: np.ndarray) -> Image.Image:
    height, width = canvas.shape[:2]
    image = Image.fromarray(canvas)
    return image.resize((width * SCALE, height * SCALE), Image.Resampling.NEAREST)


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (N, H, W, 3) bytes; one channel is drawn gray."""
    x = images.detach().float().cpu().clamp(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


def _png(image: Image.Image, info: PngImagePlugin.PngInfo | None = None) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()
