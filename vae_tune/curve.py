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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import torch
from sklearn.model_selection import train_test_split
from torch import nn

from vae_tune import plots
from vae_tune.baselines import fit_quietly, latent_logistic_regression
from vae_tune.config import flatten
from vae_tune.data import Splits, load_test
from vae_tune.errors import VaeTuneError
from vae_tune.promote import best_epoch
from vae_tune.study import Log, replay_config
from vae_tune.tasks import AutoencoderTask, HeadTask, Task, classifier_for, encode, predict
from vae_tune.tracking import Tracker
from vae_tune.train import fit


@dataclass(frozen=True)
class Curve:
    study_name: str
    trial: int
    evaluation: str  # how an error is measured: the classifier's own, or logistic regression
    rows: list[dict[str, float]]  # size, train_error, test_error, latent_dim
    run_id: str


def learning_curve(
    study: optuna.Study,
    task: Task,
    sizes: tuple[int, ...],
    tracker: Tracker,
    *,
    data_dir: Path | None,
    log: Log = print,
) -> Curve:
    trial = _promoted_trial(study)
    config = replay_config(study, trial)
    epochs, seed = best_epoch(trial), trial.user_attrs["seed"]
    s = task.splits
    pool_x, pool_y = torch.cat([s.train_x, s.val_x]), torch.cat([s.train_y, s.val_y])
    too_big = [n for n in sizes if not len(s.classes) <= n <= len(pool_y)]
    if too_big:
        raise VaeTuneError(
            f"--sizes {too_big}: the study's training + validation pool holds {len(pool_y)} "
            f"images; sizes go from {len(s.classes)} to {len(pool_y)}"
        )
    evaluation = (
        "logistic regression on the latents"
        if isinstance(task, AutoencoderTask)
        else "the classifier's own predictions"
    )
    test_x, test_y = load_test(s.dataset, data_dir, device=pool_x.device)
    run_id = tracker.start_run(
        tracker.experiment_id(study.study_name),
        f"curve-trial-{trial.number:03d}",
        params={**flatten(config), "train.epochs": epochs, "curve.sizes": ",".join(map(str, sizes)),
                "curve.evaluation": evaluation},
        tags={"vae_tune.role": "curve", "optuna.study_name": study.study_name,
              "optuna.trial_number": trial.number, "vae_tune.stage": task.stage, **task.lineage},
    )  # fmt: skip
    rows = []
    try:
        for size in sorted(sizes):
            idx = _stratified(pool_y, size, seed)
            subset = Splits(s.dataset, pool_x[idx], pool_y[idx], s.val_x[:0], s.val_y[:0])
            sub_task = dataclasses.replace(task, splits=subset)
            log(f"size {size}: training trial {trial.number}'s config for {epochs} epochs")
            torch.manual_seed(seed)
            model = sub_task.build(config).to(pool_x.device)
            train, _ = sub_task.data(config)
            fit(model, train, None, dataclasses.replace(config.train, epochs=epochs), seed=seed)
            train_error, test_error = _errors(sub_task, model, test_x, test_y, seed)
            latent_dim = None  # a pixel CNN has none
            if isinstance(task, AutoencoderTask | HeadTask):
                latent_dim = (task.encoder if isinstance(task, HeadTask) else model).cfg.latent_dim
            row = {"size": size, "train_error": train_error, "test_error": test_error,
                   "latent_dim": latent_dim}  # fmt: skip
            rows.append(row)
            tracker.log_metrics(run_id, {"train_error": train_error, "test_error": test_error},
                                step=size)  # fmt: skip
            log(f"  train error {train_error:.4f}, test error {test_error:.4f}")
    except BaseException as exc:
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        tracker.end_run(run_id, status, {"fail_reason": f"{type(exc).__name__}: {exc}"})
        raise
    tracker.log_text(run_id, json.dumps(rows, indent=2), "curve.json")
    title = f"{study.study_name}, trial {trial.number}: error by training-set size ({evaluation})"
    tracker.client.log_figure(run_id, plots.learning_curve_figure(rows, title),
                              "plots/learning_curve.png")  # fmt: skip
    tracker.end_run(run_id, "FINISHED")
    curves = dict(study.user_attrs.get("curves", {}))
    earlier = curves.get(str(trial.number), {}).get("test_reads", 0)  # a rerun reads it again
    curves[str(trial.number)] = {"run_id": run_id, "evaluation": evaluation, "rows": rows,
                                 "epochs": epochs, "test_reads": earlier + len(rows)}  # fmt: skip
    study.set_user_attr("curves", curves)
    return Curve(study.study_name, trial.number, evaluation, rows, run_id)


def _promoted_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The trial of the study's latest promotion: the configuration the curve retrains."""
    records = study.user_attrs.get("promotions", {})
    if not records:
        stage = study.user_attrs["settings"]["stage"]
        raise VaeTuneError(
            f"study {study.study_name!r} has no promoted trial: run `vae-tune promote {stage}` "
            "first (the curve retrains the champion)"
        )
    number = max(records, key=lambda n: int(records[n]["model_version"]))
    return next(t for t in study.get_trials(deepcopy=False) if t.number == int(number))


def _stratified(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """`size` indices with the class proportions of `labels` (all of them at full size)."""
    every = np.arange(len(labels))
    if size >= len(labels):
        return torch.from_numpy(every)
    y = labels.cpu().numpy()
    idx, _ = train_test_split(every, train_size=size, stratify=y, random_state=seed)
    return torch.from_numpy(np.sort(idx)).to(labels.device)


def _errors(
    task: Task, model: nn.Module, test_x: torch.Tensor, test_y: torch.Tensor, seed: int
) -> tuple[float, float]:
    """Training and test error: the classifier's own, or logistic regression on latents."""
    s = task.splits
    if isinstance(task, AutoencoderTask):
        z_train, z_test = (encode(model, x).cpu().numpy() for x in (s.train_x, test_x))
        y_train, y_test = s.train_y.cpu().numpy(), test_y.cpu().numpy()
        regression = fit_quietly(latent_logistic_regression(seed), z_train, y_train)
        return 1 - regression.score(z_train, y_train), 1 - regression.score(z_test, y_test)
    classifier = classifier_for(task, model)
    train_accuracy = _accuracy(classifier, s.train_x, s.train_y)
    return 1 - train_accuracy, 1 - _accuracy(classifier, test_x, test_y)


def _accuracy(classifier: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(classifier, x) == y).float().mean())
