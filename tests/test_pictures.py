"""Trial pictures: the images they hold survive the PNG round trip at their own size and
colours, and the top-k picture stacks several trials' reconstructions under the originals,
redrawn in the study's parent run no more often than it is allowed to."""

from __future__ import annotations

import io

import numpy as np
import optuna
import pytest
import torch
from PIL import Image

from vae_tune.evaluation.pictures import SHOWN, read_rows, topk_png, trial_png, trial_rows
from vae_tune.models.config import ModelConfig
from vae_tune.models.nets import build_model
from vae_tune.tracking.gallery import TOPK_PICTURE, Gallery, best_trials, compose
from vae_tune.tracking.tracker import Tracker


@pytest.mark.parametrize("tile", [(28, 28), (32, 32), (64, 48)])
def test_a_trial_picture_reads_back_exactly(tile: tuple[int, int]) -> None:
    rows = [
        np.random.default_rng(r).integers(0, 256, (SHOWN, *tile, 3), dtype=np.uint8)
        for r in range(3)
    ]
    back = read_rows(trial_png(rows))
    assert len(back) == 3 and all((a == b).all() for a, b in zip(rows, back, strict=True))


@pytest.mark.parametrize("image", [(1, 28, 28), (3, 32, 32)])
def test_a_vae_picture_has_samples_and_an_ae_picture_has_not(image) -> None:
    images = torch.rand(SHOWN, *image)
    cfg = ModelConfig(channels=(2, 2, 2), hidden=8, latent_dim=3, image=image)
    ae_rows, vae_rows = (trial_rows(build_model(s, cfg), images) for s in ("ae", "vae"))
    assert len(ae_rows) == 2 and len(vae_rows) == 3
    assert ae_rows[0].shape == (SHOWN, image[1], image[2], 3)
    expected = np.round(images.permute(0, 2, 3, 1).numpy() * 255)  # the originals
    assert (ae_rows[0] == np.broadcast_to(expected, ae_rows[0].shape)).all()


def test_top_k_picture_stacks_labelled_rows() -> None:
    originals = np.zeros((SHOWN, 28, 28, 3), dtype=np.uint8)
    rows = [(f"trial {n}", np.full((SHOWN, 28, 28, 3), 50 * n, dtype=np.uint8)) for n in (1, 2)]
    picture = Image.open(io.BytesIO(topk_png(originals, rows)))
    strip = Image.open(io.BytesIO(topk_png(originals, rows[:1])))
    assert picture.height > strip.height and picture.width == strip.width


def test_the_top_k_picture_waits_between_redraws_and_is_redrawn_when_asked(tmp_path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlartifacts")
    experiment = tracker.experiment_id("pictures")
    parent = tracker.start_run(experiment, "study")
    cfg = ModelConfig(channels=(2, 2, 2), hidden=8, latent_dim=3, image=(1, 28, 28))
    model = build_model("ae", cfg)
    gallery = Gallery(tracker, torch.rand(SHOWN, 1, 28, 28), parent, "val_loss", every_s=3600.0)
    study = optuna.create_study()

    def trial_ends(value: float) -> None:
        trial = study.ask()
        run_id = tracker.start_run(experiment, "trial", parent_run_id=parent)
        gallery.trial(trial, model, run_id, tmp_path)
        study.tell(trial, value)

    def shown() -> bytes | None:
        return tracker.artifact_bytes(parent, TOPK_PICTURE)

    def drawn() -> bytes:
        return compose(tracker, best_trials(study, 5), "val_loss", gallery.rows)

    trial_ends(2.0)
    gallery.update_topk(study)  # the first picture at once
    first = drawn()
    assert shown() == first
    trial_ends(1.0)  # a new best, less than an hour after the last redraw
    gallery.update_topk(study)
    assert shown() == first
    gallery.update_topk(study, now=True)  # as the study ends
    assert shown() == drawn() != first
