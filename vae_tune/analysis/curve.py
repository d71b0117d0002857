"""Learning curves: a study's promoted configuration retrained on growing training subsets,
each evaluated on the test split once, as the reference reports tabulated them.

The pool is the study's training + validation images (what promotion retrains on); each size is
a stratified subset of it, trained with the trial's seed for the epochs it was selected at.
Classifiers (mlp, cnn) are scored by their own error; an AE or VAE as the reports did, by a
logistic regression on its latents. One MLflow run holds the curve (errors by size, a table and
a plot), and the study keeps it (`curves`) for the report.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from sklearn.model_selection import train_test_split

from vae_tune.errors import VaeTuneError
from vae_tune.evaluation import plots
from vae_tune.evaluation.tasks import Task, retrain, with_splits
from vae_tune.models.config import flatten
from vae_tune.record import CurveRecord, StudyRecord, TrialRecord
from vae_tune.record.sealed import read_test_split
from vae_tune.tracking.tracker import Tracker

Log = Callable[[str], None]


@dataclass(frozen=True)
class Curve:
    study_name: str
    trial: int
    evaluation: str  # how an error is measured: the classifier's own, or logistic regression
    rows: list[dict[str, Any]]  # size, train_error, test_error, latent_dim
    run_id: str


def learning_curve(
    record: StudyRecord,
    task: Task,
    sizes: tuple[int, ...],
    tracker: Tracker,
    *,
    data_dir: Path | None,
    log: Log = print,
) -> Curve:
    study = record.live
    trial = _promoted_trial(record)
    config = record.replay(trial)
    facts = TrialRecord(trial)
    epochs, seed = facts.best_epoch, facts.seed
    s = task.splits
    pool_x, pool_y = torch.cat([s.train_x, s.val_x]), torch.cat([s.train_y, s.val_y])
    too_big = [n for n in sizes if not len(s.classes) <= n <= len(pool_y)]
    if too_big:
        raise VaeTuneError(
            f"--sizes {too_big}: the study's training + validation pool holds {len(pool_y)} "
            f"images; sizes go from {len(s.classes)} to {len(pool_y)}"
        )
    if not s.labelled:
        raise VaeTuneError(
            f"{s.dataset} has no labels: a learning curve is scored by classification error"
        )
    evaluation = task.curve_evaluation
    test_x, test_y, reads = read_test_split(
        record, trial.number, "curve", "curve", data_dir=data_dir, device=pool_x.device, log=log
    )
    run_id = tracker.start_run(
        tracker.experiment_id(study.study_name),
        f"curve-trial-{trial.number:03d}",
        params={
            **flatten(config),
            "train.stop_after": epochs,
            "curve.sizes": ",".join(map(str, sizes)),
            "curve.evaluation": evaluation,
        },
        tags={
            "vae_tune.role": "curve",
            "optuna.study_name": study.study_name,
            "optuna.trial_number": trial.number,
            "vae_tune.stage": task.stage,
            "curve.test_reads": reads,
            **task.lineage,
        },
    )
    rows: list[dict[str, Any]] = []
    with tracker.closed_on_error(run_id):
        for size in sorted(sizes):
            idx = _stratified(pool_y, size, seed)
            subset = dataclasses.replace(
                s, train_x=pool_x[idx], train_y=pool_y[idx], val_x=s.val_x[:0], val_y=s.val_y[:0]
            )
            sub_task = with_splits(task, subset)
            log(f"size {size}: training trial {trial.number}'s config to its epoch {epochs}")
            model, _ = retrain(sub_task, config, seed, epochs)
            train_error, test_error = sub_task.curve_errors(model, test_x, test_y, seed)
            row = {
                "size": size,
                "train_error": train_error,
                "test_error": test_error,
                "latent_dim": sub_task.latent_dim(model),
            }
            rows.append(row)
            tracker.log_metrics(
                run_id, {"train_error": train_error, "test_error": test_error}, step=size
            )
            log(f"  train error {train_error:.4f}, test error {test_error:.4f}")
    tracker.log_text(run_id, json.dumps(rows, indent=2), "curve.json")
    title = f"{study.study_name}, trial {trial.number}: error by training-set size ({evaluation})"
    figure = plots.learning_curve_figure(rows, title)
    tracker.log_figure(run_id, figure, "plots/learning_curve.png")
    tracker.end_run(run_id, "FINISHED")
    earlier = record.curves.get(trial.number)
    reads = (earlier.test_reads if earlier else 0) + len(rows)  # a rerun reads it again
    record.record_curve(trial.number, CurveRecord(run_id, evaluation, rows, epochs, reads))
    return Curve(study.study_name, trial.number, evaluation, rows, run_id)


def _promoted_trial(record: StudyRecord) -> optuna.trial.FrozenTrial:
    """The trial of the study's latest promotion: the configuration the curve retrains."""
    promotions = record.promotions
    if not promotions:
        stage = record.settings.stage
        raise VaeTuneError(
            f"study {record.study.study_name!r} has no promoted trial: run `vae-tune promote "
            f"{stage}` first (the curve retrains the champion)"
        )
    number = max(promotions, key=lambda n: int(promotions[n].model_version))
    return next(t for t in record.live.get_trials(deepcopy=False) if t.number == number)


def _stratified(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """`size` indices with the class proportions of `labels` (all of them at full size)."""
    every = np.arange(len(labels))
    if size >= len(labels):
        return torch.from_numpy(every)
    y = labels.cpu().numpy()
    idx, _ = train_test_split(every, train_size=size, stratify=y, random_state=seed)
    return torch.from_numpy(np.sort(idx)).to(labels.device)
