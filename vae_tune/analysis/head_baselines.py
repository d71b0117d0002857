"""The baselines a head study logs once per encoder, on its own split: logistic regression on
the latents, on PCA components of the same dimension and on raw pixels, as MLflow runs beside
the trials (tag `vae_tune.role=baseline`), so the head's accuracy has something to stand by.
"""

from __future__ import annotations

from collections.abc import Callable

from vae_tune.evaluation.baselines import logistic_baselines
from vae_tune.evaluation.tasks import HeadTask
from vae_tune.tracking.tracker import Tracker


def record_head_baselines(
    tracker: Tracker, experiment_id: str, task: HeadTask, seed: int, log: Callable[[str], None]
) -> None:
    """The three baselines on a head study's own split, once per encoder, as runs of its
    experiment (tag `vae_tune.role=baseline`)."""
    lineage = task.lineage
    done = {"vae_tune.role": "baseline", "encoder.run_id": lineage["encoder.run_id"]}
    if tracker.runs(experiment_id, done):
        return
    log("baselines: logistic regression on latents, PCA components and pixels")
    train_z, val_z = task.latents()
    s = task.splits
    scores = logistic_baselines(train_z, val_z, s.train_x, s.val_x, s.train_y, s.val_y, seed)
    for name, accuracy in scores.items():
        run_id = tracker.start_run(
            experiment_id,
            f"baseline-{name}",
            params={"baseline": name, "latent_dim": train_z.shape[1], "seed": seed},
            tags={"vae_tune.role": "baseline", **lineage},
        )
        tracker.log_metrics(run_id, {"val_accuracy": accuracy}, step=0)
        tracker.end_run(run_id, "FINISHED")
        log(f"  {name}: val_accuracy {accuracy:.4f}")
