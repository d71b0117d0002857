"""Promotion: the champion is chosen on validation data only, retrained on train + validation,
evaluated once on the sealed test split, logged with pictures, and registered as `champion`.
A classifier's champion may be retrained with several seeds (`members`), their class
probabilities averaged; one trained on mirrored images also averages over each test image and
its mirror (`mirror`). Either way it is one registered model. With a `deadline` (the pipeline's),
members after the first are trained only while the slowest so far would still end by it.
Without a retrain (`retrain=False`) the champion trial's own model is promoted as its study
judged it, and a classifier's members are the next-best trials' own models (kept_members.py).

A promoted trial is recorded on its study (`promotions`); promoting it again reuses that record
without reading the test split unless `force` is given. Every read is recorded on the study
before it happens (`sealed.py`); a promotion that fails after it ends its run FAILED (KILLED
for Ctrl-C).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from vae_tune.analysis import pareto
from vae_tune.errors import VaeTuneError
from vae_tune.evaluation.latents import IWAE_K
from vae_tune.evaluation.tasks import HeadTask, Task, deployed, retrain, with_splits
from vae_tune.models.augment import MIRRORING
from vae_tune.models.config import TrialConfig, flatten
from vae_tune.models.factory import own_family
from vae_tune.models.nets import Ensemble, Model
from vae_tune.progress import clock
from vae_tune.promotion.kept_members import kept_members
from vae_tune.record import PromotionRecord, StudyRecord, TrialRecord
from vae_tune.record.sealed import read_test_split
from vae_tune.space.stages import stage
from vae_tune.studies.objective import trial_seed
from vae_tune.tracking.export import exported
from vae_tune.tracking.tracker import Tracker

Log = Callable[[str], None]
# A member's retrain against the slowest before it: 2-core machines drift by up to ~7 % between
# two retrains of the same configuration (30m pipelines on AMD EPYC).
MEMBER_MARGIN = 1.1


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
    record: PromotionRecord
    reused: bool = False
    rule: str = ""

    @property
    def champion(self) -> Candidate:
        return self.candidates[0]

    @property
    def test(self) -> dict[str, float]:
        return self.record.test


def promote(
    record: StudyRecord,
    task: Task,
    tracker: Tracker,
    *,
    data_dir: Path | None,
    top_k: int = 3,
    seeds: int = 0,
    force: bool = False,
    pick: str = pareto.KNEE,
    iwae_k: int = IWAE_K,
    members: int = 1,
    mirror: bool | None = None,  # None: where the classifier was trained on mirrored images
    deadline: float | None = None,  # time.time() by which the members' retrains must end
    retrain: bool = True,  # False: the trials' own models, kept when they ended
    log: Log = print,
) -> Promotion:
    study, settings, metric = record.live, record.settings, record.metric
    choices = (pareto.KNEE, *stage(settings.stage).objectives)
    if pick not in choices:
        raise VaeTuneError(f"--pick {pick!r}: choose one of {', '.join(choices)}")
    if not stage(settings.stage).needs_labels:
        if members > 1:
            raise VaeTuneError(
                f"--members {members}: only a classifier's champion is averaged over seeds; "
                f"a {settings.stage} study promotes one model"
            )
        if mirror:
            raise VaeTuneError(f"--mirror: a {settings.stage} study has no classes to average")
    if len(study.directions) > 1:  # a Pareto front: one trial is chosen from it by a rule
        candidates, rule, metric = pick_from_front(record, pick, log)
    else:
        candidates = select(record, task, top_k, seeds, log)
        rule = (
            f"best mean validation {metric} ({study.direction.name.lower()}) over the top "
            f"{top_k} complete trials, {seeds} extra seed(s) each"
        )
    champion = candidates[0]
    number = champion.trial.number
    log(f"champion: trial {number}, validation {metric} {_mean_spread(champion)} ({rule})")
    earlier = record.promotions.get(number)
    if earlier and not force:
        log(
            f"trial {number} was promoted before (run {earlier.run_id}): the test split is not "
            "read again; use --force to retrain and evaluate it again."
        )
        return Promotion(study.study_name, metric, candidates, earlier, reused=True, rule=rule)

    epochs = TrialRecord(champion.trial).best_epoch
    if mirror is None:
        mirror = mirrors(settings.stage, champion.config)
    member_trials: list[int] = []  # members that are other trials' own models
    if retrain:
        first = TrialRecord(champion.trial).seed  # the trial's own: member 1 reproduces it
        seeds_of_members = [first] + [trial_seed(first, i) for i in range(1, members)]
        models, final_task = retrain_on_train_and_validation(
            champion, task, epochs, seeds_of_members, log, deadline
        )
    else:
        models, member_trials = kept_members(
            record, task, tracker, champion.trial, members, mirror, log
        )
        final_task = task
    members = len(models)
    model = averaged(models, mirror, final_task) if mirror or members > 1 else models[0]
    why = "re-promotion" if earlier else "promotion"
    served = deployed(final_task, model)  # what is registered, exported before the test read
    what = f"trial {number}'s model {own_family(served) or settings.stage}"
    with exported(served, final_task.splits.train_x[:4], what) as parts:
        device = task.splits.train_x.device
        test_x, test_y, reads = read_test_split(
            record, number, "promote", why, data_dir=data_dir, device=device, log=log
        )
        run_id = tracker.start_run(
            tracker.experiment_id(study.study_name),
            f"promote-trial-{number:03d}",
            params={**flatten(champion.config), "train.stop_after": epochs},
            tags={
                "vae_tune.role": "promotion",
                "vae_tune.stage": settings.stage,
                "optuna.study_name": study.study_name,
                "optuna.trial_number": number,
                "source.run_id": TrialRecord(champion.trial).run_id,
                "promotion.selection_rule": rule,
                "promotion.seeds": json.dumps([c.values for c in candidates]),
                "promotion.forced": str(bool(earlier)).lower(),
                "promotion.test_reads": reads,
                "promotion.members": members,
                "promotion.mirrored": str(mirror).lower(),
                "promotion.retrained": str(retrain).lower(),
                "promotion.member_trials": json.dumps(member_trials),
                **task.lineage,
            },
        )
        with tracker.closed_on_error(run_id):
            _, evaluation = final_task.evaluate_test(model, test_x, test_y, log, iwae_k)
            if len(study.directions) > 1:
                front = pareto.front_figure(study, record.metrics, number)
                evaluation.figures["pareto_front.png"] = front
            metrics = evaluation.metrics | {
                f"val_{metric}_mean": champion.mean,
                f"val_{metric}_std": champion.spread,
            }
            tracker.log_metrics(run_id, metrics, step=0)
            for name, figure in evaluation.figures.items():
                tracker.log_figure(run_id, figure, f"plots/{name}")
            texts = {**evaluation.texts, "candidates.json": _candidates_json(candidates)}
            for name, text in texts.items():
                tracker.log_text(run_id, text, name)
            model_name = stage(settings.stage).registry_name(settings.dataset)
            split_tags = {f"split.{k}": str(v) for k, v in settings.split.items()}
            version = tracker.register_model(
                run_id,
                parts,  # exported before the test read: the model that was evaluated
                model_name,
                tags={
                    "study": study.study_name,
                    "trial": str(number),
                    "stage": settings.stage,
                    **split_tags,
                },
            )
    tracker.end_run(run_id, "FINISHED")
    promoted = PromotionRecord(
        run_id=run_id,
        model_name=model_name,
        model_version=version,
        test=evaluation.metrics,
        test_reads=reads,
        per_class_f1=evaluation.per_class_f1,
        baselines=evaluation.baselines,
        density=evaluation.density,
        model={k: v for k, v in flatten(champion.config).items() if k.startswith("model.")},
        members=members,
        mirrored=mirror,
        retrained=retrain,
        member_trials=member_trials,
    )
    record.record_promotion(number, promoted)
    return Promotion(study.study_name, metric, candidates, promoted, rule=rule)


def pick_from_front(record: StudyRecord, rule: str, log: Log) -> tuple[list[Candidate], str, str]:
    """The multi-objective study's promoted trial, by `rule`; the metric it is judged on."""
    names = {
        name: record.metrics.index(m)
        for name, (m, _) in stage(record.settings.stage).objectives.items()
        if m in record.metrics
    }
    trial, words = pareto.pick(record.live, names, rule)
    index = names.get(rule, 0)
    for t in record.live.best_trials:
        shown = ", ".join(f"{m} {v:.5g}" for m, v in zip(record.metrics, t.values, strict=True))
        log(f"  Pareto front: trial {t.number}: {shown}")
    candidate = Candidate(trial, record.replay(trial), [trial.values[index]])
    return [candidate], f"{words}; --pick {rule}", record.metrics[index]


def select(record: StudyRecord, task: Task, top_k: int, seeds: int, log: Log) -> list[Candidate]:
    """The top-k complete trials, each optionally re-run with extra seeds; best mean first."""
    study, metric = record.live, record.metric
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise VaeTuneError(f"study {study.study_name!r} has no complete trial to promote")
    top = sorted(complete, key=_value, reverse=maximize)[:top_k]
    candidates = []
    for trial in top:
        candidate = Candidate(trial, record.replay(trial), [_value(trial)])
        for rep in range(seeds):
            seed = trial_seed(record.settings.seed, trial.number + 10**6 * (rep + 1))
            _, history = retrain(task, candidate.config, seed, validate=True)
            values = [h.metrics[metric] for h in history]
            candidate.values.append(max(values) if maximize else min(values))
        log(f"  trial {trial.number}: validation {metric} {_mean_spread(candidate)}")
        candidates.append(candidate)
    return sorted(candidates, key=lambda c: c.mean, reverse=maximize)


def mirrors(stage_name: str, config: TrialConfig) -> bool:
    """Whether a promoted classifier averages each image with its mirror: where it learned
    mirrored images (`train.augment` flip_shift, or the alternating flips). Measured on the
    validation split (benchmarks/ensemble.py, seeds 0-2): 93.34 +- 0.02 % against 93.12 +-
    0.06 % for one fine-tuned classifier on Fashion-MNIST, for two forward passes at test time."""
    return stage(stage_name).needs_labels and config.train.augment in MIRRORING


def averaged(models: list[Model], mirror: bool, task: Task) -> Ensemble:
    """The models as one classifier of images (frozen heads put behind their encoder)."""
    if isinstance(task, HeadTask):
        models = [task.classifier(m) for m in models]
    return Ensemble(models, mirror=mirror)


def retrain_on_train_and_validation(
    champion: Candidate,
    task: Task,
    epochs: int,
    seeds: list[int],
    log: Log,
    deadline: float | None = None,
) -> tuple[list[Model], Task]:
    """The champion trained on train + validation for the epochs it was selected at, once per
    seed; past the first, only while the slowest member so far, with MEMBER_MARGIN, would end
    by the deadline."""
    s = task.splits
    both = dataclasses.replace(
        s,
        train_x=torch.cat([s.train_x, s.val_x]),
        train_y=torch.cat([s.train_y, s.val_y]),
        val_x=s.val_x[:0],
        val_y=s.val_y[:0],
    )
    final_task = with_splits(task, both)  # a head task re-encodes the images
    total = champion.config.train.epochs
    averaged = f", {len(seeds)} seeds averaged" if len(seeds) > 1 else ""
    if len(seeds) > 1 and deadline is not None:
        averaged = f", up to {len(seeds)} seeds averaged (those that end in time)"
    log(
        f"retraining trial {champion.trial.number} on {len(both.train_x)} images: epoch "
        f"{epochs} of its {total}-epoch schedule, where it was selected{averaged}"
    )
    models: list[Model] = []
    slowest = 0.0
    for i, seed in enumerate(seeds):
        if models and deadline is not None:
            left, needed = deadline - time.time(), MEMBER_MARGIN * slowest
            if needed > left:
                log(
                    f"  member {i + 1} would take {clock(needed)}, {clock(max(0.0, left))} "
                    f"is left: {len(models)} seed(s) averaged"
                )
                break
        if len(seeds) > 1:
            log(f"  member {i + 1} of {len(seeds)} (seed {seed})")
        started = time.time()
        models.append(retrain(final_task, champion.config, seed, epochs)[0])
        slowest = max(slowest, time.time() - started)
    return models, final_task


def _value(trial: FrozenTrial) -> float:
    assert trial.value is not None, "a complete trial has its value"
    return trial.value


def _mean_spread(candidate: Candidate) -> str:
    if len(candidate.values) == 1:
        return f"{candidate.mean:.5g}"
    return f"{candidate.mean:.5g} +- {candidate.spread:.2g} over {len(candidate.values)} runs"


def _candidates_json(candidates: list[Candidate]) -> str:
    rows = [
        {
            "trial": c.trial.number,
            "values": c.values,
            "mean": c.mean,
            "std": c.spread,
            "params": c.trial.params,
        }
        for c in candidates
    ]
    return json.dumps(rows, indent=2)
