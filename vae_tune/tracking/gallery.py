"""Pictures of a study's trials where users look at them.

Each AE/VAE trial that completes or is pruned leaves its picture (`recon.png`: validation images,
their reconstructions, a VAE's prior samples) in its MLflow run and in optuna-dashboard's
artifact store, so the dashboard's trial page shows it. A trial that ends among the top k also
gets its parts logged as MLflow images (`log_image`, one key each: `mlflow_view.IMAGE_KEYS`),
which MLflow's charts draw for the study's top-k view. Only then: each costs a small PNG, its
thumbnail and their uploads (~0.05 s a trial), and a trial can enter the top k only as it ends
(later trials only push it down), so no trial outside it ever needs them.

The study's parent run keeps `compare/recon_topk.png`, the same images reconstructed by its
best trials, redrawn when they change (at most every TOPK_EVERY_S seconds, and when the study
ends); `vae-tune compare` draws it for any trials.
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import numpy as np
import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import FrozenTrial, TrialState
from PIL import Image

from vae_tune.errors import VaeTuneError
from vae_tune.evaluation.pictures import read_rows, topk_png, trial_png, trial_rows
from vae_tune.models.nets import Autoencoder
from vae_tune.record import TrialRecord
from vae_tune.tracking import links
from vae_tune.tracking.mlflow_view import IMAGE_KEYS
from vae_tune.tracking.tracker import Tracker

PICTURE = "recon.png"
TOPK_PICTURE = "compare/recon_topk.png"
TOP_K = 5
# Sub-second trials (a GPU's) would otherwise each wait on a redraw and an upload.
TOPK_EVERY_S = 10.0


class Gallery:
    def __init__(
        self,
        tracker: Tracker,
        images: torch.Tensor,
        parent_run_id: str,
        metric: str,
        artifact_dir: Path | None = None,
        top_k: int = TOP_K,
        every_s: float = TOPK_EVERY_S,
    ) -> None:
        self.tracker, self.images, self.parent_run_id = tracker, images, parent_run_id
        self.metric, self.top_k, self.every_s = metric, top_k, every_s
        self.store = None
        if artifact_dir is not None:
            artifact_dir.mkdir(parents=True, exist_ok=True)
            self.store = FileSystemArtifactStore(str(artifact_dir))
        self.shown: list[int] = []  # the trials the parent run's picture shows now
        self.drawn_at = -math.inf  # time.monotonic() of the last redraw
        # Each trial's rows of images, drawn here or downloaded once: the top-k picture is
        # redrawn from memory, not from k downloads after every trial.
        self.rows: dict[int, list[np.ndarray]] = {}

    def trial(self, trial: optuna.Trial, model: Autoencoder, run_id: str, folder: Path) -> None:
        """The trial's picture, in its MLflow run and on its optuna-dashboard page."""
        path = folder / PICTURE
        rows = trial_rows(model, self.images)
        self.rows[trial.number] = rows
        path.write_bytes(trial_png(rows))
        self.tracker.log_artifact(run_id, path)
        if self.store is not None:
            upload_artifact(
                artifact_store=self.store,
                file_path=str(path),
                study_or_trial=trial,
                mimetype="image/png",
            )

    def update_topk(
        self, study: optuna.Study, now: bool = False, ended: FrozenTrial | None = None
    ) -> None:
        """Redraw the parent run's top-k picture if the best trials changed, unless it was
        redrawn less than `every_s` ago (`now`: at once, as when the study ends). A trial that
        has just `ended` among the top k first logs its images for the top-k view."""
        if ended is not None:
            self._log_images(study, ended)
        if not now and time.monotonic() - self.drawn_at < self.every_s:
            return
        top = best_trials(study, self.top_k)
        numbers = [t.number for t in top]
        if numbers and numbers != self.shown:
            picture = compose(self.tracker, top, self.metric, self.rows)
            self.tracker.log_artifact_bytes(self.parent_run_id, TOPK_PICTURE, picture)
            self.shown, self.drawn_at = numbers, time.monotonic()

    def _log_images(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """The trial's picture parts as MLflow images, if it ends among the top k."""
        rows, run_id = self.rows.get(trial.number), TrialRecord(trial).run_id
        if rows is None or run_id is None:
            return  # not drawn by this process, or no run
        if trial.number not in {t.number for t in best_trials(study, links.TOP_K)}:
            return
        for key, row in zip(IMAGE_KEYS, rows, strict=False):  # a 4 x 4 block each
            block = Image.open(io.BytesIO(trial_png([row])))
            self.tracker.client.log_image(run_id, block, key=key, step=0, synchronous=True)


def compose(
    tracker: Tracker,
    trials: list[FrozenTrial],
    metric: str,
    cache: dict[int, list[np.ndarray]] | None = None,
) -> bytes:
    """The trials' reconstructions under one row of validation images, each labelled. Rows
    not in `cache` are read from the trials' runs (and kept there)."""
    labelled, originals = [], None
    cache = {} if cache is None else cache
    for trial in trials:
        if trial.number not in cache:
            run_id = TrialRecord(trial).run_id
            png = tracker.artifact_bytes(run_id, PICTURE) if run_id else None
            if png is None:
                continue  # a trial from before pictures existed, or one that failed
            cache[trial.number] = read_rows(png)
        rows = cache[trial.number]
        originals = rows[0] if originals is None else originals
        value = f"{metric} {trial.values[0]:.4g}" if trial.values else trial.state.name
        labelled.append((f"trial {trial.number}: {value}", rows[1]))
    if originals is None:
        raise VaeTuneError("none of these trials has a picture (recon.png in its MLflow run)")
    return topk_png(originals, labelled)


def best_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The k best complete trials by the study's (first) objective."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    return sorted(complete, key=lambda t: t.values[0], reverse=maximize)[:k]
