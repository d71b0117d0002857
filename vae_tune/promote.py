"""Promotion: the champion is chosen on validation data only, retrained on train + validation,
evaluated once on the sealed test split, logged with pictures, and registered as `champion`.

A promoted trial is recorded on its study (`promotions`); promoting it again reuses that record
without reading the test split unless `force` is given, which is recorded as well.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from sklearn.metrics import confusion_matrix, f1_score
from torch import nn

from vae_tune import plots
from vae_tune.baselines import logistic_baselines
from vae_tune.config import TrialConfig, flatten
from vae_tune.data import Splits, load_test
from vae_tune.density import density_baselines
from vae_tune.errors import VaeTuneError
from vae_tune.models import ConvVAE
from vae_tune.study import Log, replay_config, trial_seed
from vae_tune.tasks import HeadTask, PixelTask, Task, classifier_for, encode, predict
from vae_tune.tracking import Tracker
from vae_tune.train import evaluate, fit


@dataclass
class Candidate:
    trial: FrozenTrial
    config: TrialConfig
    values: list[float]  # the validation metric: the study's value, then one per extra seed

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def spread(self) -> float:
        return statistics.pstdev(self.values) if len(self.values) > 1 else 0.0


@dataclass
class Promotion:
    study_name: str
    metric: str
    candidates: list[Candidate]  # champion first
    test: dict[str, float]
    run_id: str
    model_name: str
    model_version: str
    reused: bool = False
    per_class_f1: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)
    density: dict[str, dict[str, float]] = field(default_factory=dict)  # VAE: PPCA, mixture

    @property
    def champion(self) -> Candidate:
        return self.candidates[0]


def promote(
    study: optuna.Study,
    task: Task,
    tracker: Tracker,
    *,
    data_dir: Path | None,
    top_k: int = 3,
    seeds: int = 0,
    force: bool = False,
    log: Log = print,
) -> Promotion:
    settings = study.user_attrs["settings"]
    metric = study.user_attrs["metric"]
    candidates = select(study, task, top_k, seeds, log)
    champion = candidates[0]
    number = champion.trial.number
    rule = (
        f"best mean validation {metric} ({study.direction.name.lower()}) over the top {top_k} "
        f"complete trials, {seeds} extra seed(s) each"
    )
    log(f"champion: trial {number}, validation {metric} {_mean_spread(champion)} ({rule})")

    records = dict(study.user_attrs.get("promotions", {}))
    record = records.get(str(number))
    if record and not force:
        log(f"trial {number} was promoted before (run {record['run_id']}): the test split is "
            "not read again; use --force to retrain and evaluate it again.")  # fmt: skip
        return Promotion(study.study_name, metric, candidates, record["test"], record["run_id"],
                         record["model_name"], record["model_version"], reused=True,
                         per_class_f1=record.get("per_class_f1", {}),
                         baselines=record.get("baselines", {}),
                         density=record.get("density", {}))  # fmt: skip

    test_reads = (record or {}).get("test_reads", 0) + 1  # this promotion reads it once
    model, final_task = retrain_on_train_and_validation(champion, task, log)
    log("evaluating on the test split (read once for this promotion)")
    test_x, test_y = load_test(settings["dataset"], data_dir, device=task.splits.train_x.device)
    experiment_id = tracker.experiment_id(study.study_name)
    run_id = tracker.start_run(
        experiment_id,
        f"promote-trial-{number:03d}",
        params={**flatten(champion.config), "train.epochs": best_epoch(champion.trial)},
        tags={
            "vae_tune.role": "promotion",
            "vae_tune.stage": settings["stage"],
            "optuna.study_name": study.study_name,
            "optuna.trial_number": number,
            "source.run_id": champion.trial.user_attrs.get("mlflow_run_id"),
            "promotion.selection_rule": rule,
            "promotion.seeds": json.dumps([c.values for c in candidates]),
            "promotion.forced": str(bool(record)).lower(),
            "promotion.test_reads": test_reads,
            **task.lineage,
        },
    )
    result = Promotion(study.study_name, metric, candidates, {}, run_id, "", "")
    if isinstance(final_task, HeadTask | PixelTask):
        model = _evaluate_classifier(result, model, final_task, test_x, test_y, tracker, log)
    else:
        _evaluate_autoencoder(result, model, final_task.splits.train_x, test_x, test_y,
                              task.splits.classes, tracker, log)  # fmt: skip
    tracker.log_metrics(
        run_id,
        {**result.test, f"val_{metric}_mean": champion.mean, f"val_{metric}_std": champion.spread},
        step=0,
    )
    tracker.log_text(run_id, _candidates_json(candidates), "candidates.json")
    result.model_name = f"vae-tune-{settings['dataset']}-{settings['stage']}"
    result.model_version = tracker.register_model(
        run_id,
        model.cpu(),
        result.model_name,
        tags={
            "study": study.study_name,
            "trial": str(number),
            "stage": settings["stage"],
            **{f"split.{k}": str(settings[k]) for k in ("dataset", "val_size", "seed")},
        },
    )
    tracker.end_run(run_id, "FINISHED")
    records[str(number)] = {
        "run_id": run_id,
        "model_name": result.model_name,
        "model_version": result.model_version,
        "test": result.test,
        "per_class_f1": result.per_class_f1,
        "baselines": result.baselines,
        "density": result.density,
        "model": {k: v for k, v in flatten(champion.config).items() if k.startswith("model.")},
        "test_reads": test_reads,
    }
    study.set_user_attr("promotions", records)
    return result


def select(study: optuna.Study, task: Task, top_k: int, seeds: int, log: Log) -> list[Candidate]:
    """The top-k complete trials, each optionally re-run with extra seeds; best mean first."""
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise VaeTuneError(f"study {study.study_name!r} has no complete trial to promote")
    top = sorted(complete, key=lambda t: t.value, reverse=maximize)[:top_k]
    metric = study.user_attrs["metric"]
    candidates = []
    for trial in top:
        candidate = Candidate(trial, replay_config(study, trial), [trial.value])
        for rep in range(seeds):
            seed = trial_seed(
                study.user_attrs["settings"]["seed"], trial.number + 10**6 * (rep + 1)
            )
            candidate.values.append(_validation_value(candidate, task, seed, metric, maximize))
        log(f"  trial {trial.number}: validation {metric} {_mean_spread(candidate)}")
        candidates.append(candidate)
    return sorted(candidates, key=lambda c: c.mean, reverse=maximize)


def retrain_on_train_and_validation(
    champion: Candidate, task: Task, log: Log
) -> tuple[nn.Module, Task]:
    """The champion trained on train + validation for the epochs it was selected at."""
    s = task.splits
    both = Splits(s.dataset, torch.cat([s.train_x, s.val_x]), torch.cat([s.train_y, s.val_y]),
                  s.val_x[:0], s.val_y[:0])  # fmt: skip
    final_task = dataclasses.replace(task, splits=both)  # a head task re-encodes the images
    epochs = best_epoch(champion.trial)
    n = len(both.train_x)
    log(f"retraining trial {champion.trial.number} on {n} images for {epochs} epochs")
    config = champion.config
    seed = champion.trial.user_attrs["seed"]
    torch.manual_seed(seed)
    model = final_task.build(config).to(s.train_x.device)
    train, _ = final_task.data(config)
    fit(model, train, None, dataclasses.replace(config.train, epochs=epochs), seed=seed)
    return model, final_task


def _evaluate_autoencoder(
    result: Promotion,
    model: nn.Module,
    train_x: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    classes: tuple[str, ...],
    tracker: Tracker,
    log: Log,
) -> None:
    result.test = {f"test_{k}": v for k, v in evaluate(model, (test_x,)).items()}
    latent_dim = model.cfg.latent_dim
    if isinstance(model, ConvVAE):
        log(f"density baselines on the same test split: PPCA and a Gaussian mixture, d = 2 "
            f"and {latent_dim}")  # fmt: skip
        result.density = density_baselines(train_x, test_x, [2, latent_dim])
        for name, scores in result.density.items():
            result.test |= {f"test_{name.replace('-', '')}_{k}": v for k, v in scores.items()}
    model.eval()
    with torch.no_grad():
        shown = test_x[:10]
        figures = {
            "reconstructions.png": plots.image_rows(
                {"test image": shown, "reconstruction": model(shown)},
                "Test images and their reconstructions",
            ),
            "interpolation.png": plots.image_rows(
                {"decoded": _interpolate(model, test_x[0], test_x[1])},
                "Decoded latents between two test images",
            ),
            "latent_projection.png": plots.latent_projections(
                encode(model, test_x[:1000]), test_y[:1000], classes
            ),
        }
        if hasattr(model, "sample"):
            torch.manual_seed(0)
            figures["prior_samples.png"] = plots.image_grid(
                model.sample(32), "Samples decoded from the prior N(0, I)"
            )
        if latent_dim == 2:
            figures["latent_scatter.png"] = plots.latent_scatter(encode(model, test_x), test_y,
                                                                 classes)  # fmt: skip
            grid = plots.latent_grid().to(test_x.device)
            figures["latent_grid.png"] = plots.image_grid(
                model.decode(grid),
                "Decoded latents over [-2, 2]^2 (z1 across, z2 down)",
                columns=int(len(grid) ** 0.5),
            )
    _log_figures(tracker, result.run_id, figures)


def _evaluate_classifier(
    result: Promotion,
    model: nn.Module,
    task: HeadTask | PixelTask,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    tracker: Tracker,
    log: Log,
) -> nn.Module:
    """Accuracy, macro-F1, per-class F1 and confusion matrix; the baselines on the same test."""
    classifier = classifier_for(task, model)
    y_true, y_pred = test_y.cpu().numpy(), predict(classifier, test_x).cpu().numpy()
    classes = task.splits.classes
    per_class = f1_score(y_true, y_pred, average=None, labels=range(len(classes)))
    result.per_class_f1 = {name: float(f) for name, f in zip(classes, per_class, strict=True)}
    result.test = {
        "test_accuracy": float(np.mean(y_true == y_pred)),
        "test_macro_f1": float(np.mean(per_class)),
    }
    matrix = confusion_matrix(y_true, y_pred, labels=range(len(classes)))
    title = f"Test confusion matrix (accuracy {result.test['test_accuracy']:.4f})"
    figure = plots.confusion_matrix_figure(matrix, classes, title)
    _log_figures(tracker, result.run_id, {"confusion_matrix.png": figure})
    tracker.log_text(result.run_id, json.dumps(result.per_class_f1, indent=2), "per_class_f1.json")
    if isinstance(task, HeadTask):  # a pixel CNN has no latents to compare with
        log("baselines on the same test split: logistic regression on latents, PCA and pixels")
        train_z, _ = task.latents()
        s = task.splits
        test_z = encode(task.encoder, test_x)
        scores = logistic_baselines(train_z, test_z, s.train_x, test_x, s.train_y, test_y)
        result.baselines = {f"test_accuracy_{name}": v for name, v in scores.items()}
        result.test |= result.baselines
    return classifier


def _interpolate(
    model: nn.Module, a: torch.Tensor, b: torch.Tensor, steps: int = 10
) -> torch.Tensor:
    za, zb = model.encode(a[None]), model.encode(b[None])
    weights = torch.linspace(0, 1, steps, device=za.device)[:, None]
    return model.decode((1 - weights) * za + weights * zb)


def _log_figures(tracker: Tracker, run_id: str, figures: dict[str, Any]) -> None:
    for name, figure in figures.items():
        tracker.client.log_figure(run_id, figure, f"plots/{name}")


def best_epoch(trial: FrozenTrial) -> int:
    return int(trial.user_attrs.get("best_epoch") or max(trial.intermediate_values))


def _mean_spread(candidate: Candidate) -> str:
    if len(candidate.values) == 1:
        return f"{candidate.mean:.5g}"
    return f"{candidate.mean:.5g} +- {candidate.spread:.2g} over {len(candidate.values)} runs"


def _candidates_json(candidates: list[Candidate]) -> str:
    return json.dumps(
        [{"trial": c.trial.number, "values": c.values, "mean": c.mean, "std": c.spread,
          "params": c.trial.params} for c in candidates],
        indent=2,
    )  # fmt: skip


def _validation_value(
    candidate: Candidate, task: Task, seed: int, metric: str, maximize: bool
) -> float:
    """One more training run of the candidate on the train split, scored as the study scores."""
    torch.manual_seed(seed)
    model = task.build(candidate.config).to(task.splits.train_x.device)
    train, val = task.data(candidate.config)
    history = fit(model, train, val, candidate.config.train, seed=seed)
    values = [h.metrics[metric] for h in history]
    return max(values) if maximize else min(values)
