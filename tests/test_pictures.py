"""Trial pictures: the images they hold survive the PNG round trip, and the top-k picture
stacks several trials' reconstructions under the originals."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from vae_tune.analysis.pictures import SHOWN, read_rows, topk_png, trial_png, trial_rows
from vae_tune.config import ModelConfig
from vae_tune.models import build_model


def test_a_trial_picture_reads_back_exactly() -> None:
    rows = [
        np.random.default_rng(r).integers(0, 256, (SHOWN, 28, 28), dtype=np.uint8) for r in range(3)
    ]
    back = read_rows(trial_png(rows))
    assert len(back) == 3 and all((a == b).all() for a, b in zip(rows, back, strict=True))


def test_a_vae_picture_has_samples_and_an_ae_picture_has_not() -> None:
    images = torch.rand(SHOWN, 1, 28, 28)
    cfg = ModelConfig(channels=(2, 2, 2), hidden=8, latent_dim=3)
    ae_rows, vae_rows = (trial_rows(build_model(s, cfg), images) for s in ("ae", "vae"))
    assert len(ae_rows) == 2 and len(vae_rows) == 3
    assert (ae_rows[0] == np.round(images.squeeze(1).numpy() * 255)).all()  # the originals
    again = trial_rows(build_model("vae", cfg), images)
    assert len(again) == 3  # the prior noise is fixed: same shape, drawn from seed 0


def test_top_k_picture_stacks_labelled_rows() -> None:
    originals = np.zeros((SHOWN, 28, 28), dtype=np.uint8)
    rows = [(f"trial {n}", np.full((SHOWN, 28, 28), 50 * n, dtype=np.uint8)) for n in (1, 2)]
    picture = Image.open(io.BytesIO(topk_png(originals, rows)))
    strip = Image.open(io.BytesIO(topk_png(originals, rows[:1])))
    assert picture.height > strip.height and picture.width == strip.width
