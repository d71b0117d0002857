"""A promotion without a retrain (`promote --no-retrain`): the champion trial's own model, as its
study judged it, kept in its MLflow run when it ended (tracking/kept.py).

A classifier's champion may be averaged with the next-best complete trials' own models: each is
taken, best first, only where it raises the average's validation accuracy (ensemble selection,
Caruana et al. 2004), up to `members` models. They cost no training: on a short budget the time
a retrain would take goes to the study instead.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from vae_tune.errors import VaeTuneError
from vae_tune.evaluation.tasks import Task, deployed
from vae_tune.models.nets import Ensemble, Model
from vae_tune.models.saving import load_weights
from vae_tune.record import StudyRecord, TrialRecord
from vae_tune.tracking.kept import kept
from vae_tune.tracking.tracker import Tracker

Log = Callable[[str], None]
POOL_PER_MEMBER = 2  # trials looked at per member wanted: each costs a pass over validation


def kept_model(record: StudyRecord, task: Task, tracker: Tracker, trial: FrozenTrial) -> Model:
    """The trial's model with the weights it kept, on the data's device."""
    run_id = TrialRecord(trial).run_id
    state = kept(tracker, run_id) if run_id else None
    if state is None:
        raise VaeTuneError(
            f"trial {trial.number} of {record.live.study_name} kept no model (a trial run before "
            "vae-tune 0.5, or one whose save failed: its run's kept_model_error tag says why); "
            "promote it with a retrain: leave out --no-retrain"
        )
    model = task.build(record.replay(trial))
    load_weights(model, state)
    return model.to(task.splits.train_x.device).eval()


def kept_members(
    record: StudyRecord,
    task: Task,
    tracker: Tracker,
    champion: FrozenTrial,
    members: int,
    mirror: bool,
    log: Log,
) -> tuple[list[Model], list[int]]:
    """The champion's kept model, then the next-best trials' while each raises the average's
    validation accuracy, up to `members`; the models and their trial numbers."""
    log(
        f"no retrain: trial {champion.number}'s own model, as its study judged it (epoch "
        f"{TrialRecord(champion).best_epoch}, trained on {len(task.splits.train_x)} images)"
        + (f"; up to {members} trials' models averaged" if members > 1 else "")
    )
    models, numbers = [kept_model(record, task, tracker, champion)], [champion.number]
    if members == 1:
        return models, numbers
    s = task.splits
    total = _probabilities(deployed(task, models[0]), s.val_x, mirror)
    accuracy = _accuracy(total, s.val_y)
    log(f"  trial {champion.number}'s own model: validation accuracy {accuracy:.4f}")
    for trial in _next_best(record, champion, POOL_PER_MEMBER * members):
        if len(models) == members:
            break
        model = kept_model(record, task, tracker, trial)
        probabilities = _probabilities(deployed(task, model), s.val_x, mirror)
        joined = _accuracy(total + probabilities, s.val_y)
        taken = joined > accuracy
        verdict = "taken" if taken else "left out"
        log(f"  with trial {trial.number}'s: {accuracy:.4f} -> {joined:.4f}, {verdict}")
        if taken:
            models.append(model)
            numbers.append(trial.number)
            total, accuracy = total + probabilities, joined
    return models, numbers


def _next_best(record: StudyRecord, champion: FrozenTrial, size: int) -> list[FrozenTrial]:
    """The complete trials after the champion, best value first."""
    maximize = record.live.direction == optuna.study.StudyDirection.MAXIMIZE
    others = [
        t
        for t in record.live.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.number != champion.number and t.value is not None
    ]
    return sorted(others, key=lambda t: float(t.value or 0.0), reverse=maximize)[:size]


@torch.no_grad()
def _probabilities(classifier: Model, images: torch.Tensor, mirror: bool) -> torch.Tensor:
    """Class probabilities of each image (averaged with its mirror's), a batch at a time."""
    scorer: Model = Ensemble([classifier], mirror=True) if mirror else classifier
    scorer.eval()
    batches = [scorer(images[i : i + 2048]).float().softmax(1) for i in range(0, len(images), 2048)]
    return torch.cat(batches)


def _accuracy(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    return float((probabilities.argmax(1) == labels).float().mean())
