"""`vae-tune pipeline`: from nothing to a tested classifier within a time budget.

Four stages, the user's own commands in order: the encoder study, its promotion, the head study
on the promoted encoder, its promotion (of as many seeds of the champion as end in time,
averaged: `promote --members`); then the report. The budget is planned from what an
epoch of each model costs on this machine (measured first, in seconds), and the studies then
correct the plan with their own epoch times: each stops starting trials that could not end in
time, so both promotions fit. Rerunning resumes: a study that ended (its trials done, or its
share of a budget spent) is skipped, an interrupted one is topped up, a promoted champion is
not retrained.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import optuna
import torch

from vae_tune.data.defaults import data_defaults
from vae_tune.data.splits import load_splits
from vae_tune.errors import VaeTuneError
from vae_tune.evaluation.calibrate import baseline_seconds, epoch_seconds
from vae_tune.evaluation.tasks import AutoencoderTask
from vae_tune.models.nets import Autoencoder, Classifier, MLPHead
from vae_tune.models.train import encode
from vae_tune.progress import clock
from vae_tune.project.folder import Project
from vae_tune.record import StudyRecord
from vae_tune.space.options import DEFAULT_SEED
from vae_tune.space.spaces import SearchSpace, load_space
from vae_tune.space.stages import HEAD, stage
from vae_tune.studies.plan import StudyRequest
from vae_tune.studies.stopping import FINISHED
from vae_tune.studies.warm_start import latest_other
from vae_tune.usecases import runner
from vae_tune.usecases.budget import (
    ENCODER_EVALUATION_EPOCHS,
    ENSEMBLE_MEMBERS,
    Costs,
    choose_plan,
    least_budget,
    retrain_scale,
)
from vae_tune.usecases.runner import StudyRef

Log = Callable[[str], None]
N_TRIALS_CAP = 200  # the budget, not a trial count, ends a pipeline's studies


@dataclass(frozen=True)
class PipelineRequest:
    encoder: str = "ae"
    budget_s: float | None = 1800.0  # None: the least this machine needs
    dataset: str = "fashion-mnist"
    data_dir: Path | None = None
    seed: int | None = None
    workers: int = 1
    train_size: int | None = None
    val_size: int = 12_000
    # Each study starts from the best configurations of the latest other study of its stage
    # on this project (`--warm-start`); a stage with none starts cold, and the log says so.
    warm_start: bool = False
    encoder_target: float | None = None  # the encoder study stops once a trial reaches it
    head_target: float | None = None  # the head study's
    trial_timeout: str | float | None = None  # every trial of both studies
    # False: both promotions test their trials' own models (`promote --no-retrain`), and the
    # time their retrains would take goes to the studies; None: the planner's choice.
    retrain: bool | None = None


@dataclass(frozen=True)
class StageRow:
    stage: str
    study: str
    champion: int | None
    metric: str
    validation: float | None
    test: dict[str, float]
    wall_s: float
    skipped: bool = False


@dataclass
class PipelineResult:
    budget_s: float
    wall_s: float
    plan: str
    rows: list[StageRow] = field(default_factory=list)
    baselines: dict[str, float] = field(default_factory=dict)
    report: Path | None = None


def run_pipeline(request: PipelineRequest, project: Project, log: Log = print) -> PipelineResult:
    started = time.time()
    end = started + (request.budget_s or 0.0)  # `least`: set once this machine is measured

    def stage_log(stage: str) -> Log:
        def emit(line: str) -> None:
            log(f"[{stage} | {clock(max(0.0, end - time.time()))} left] {line}")

        return emit

    encoder_name = stage(request.encoder).study_name(request.dataset)
    head_name = HEAD.study_name(request.dataset, request.encoder)
    encoder_space = load_space(project.space_path(request.encoder))
    head_space = load_space(project.space_path(HEAD.name))
    # Nothing is written before the plan stands: a fresh project stays empty if it fails.
    storage = project.open_storage() if project.has_storage else None
    encoder_epochs = _stored_epochs(storage, encoder_name) or _epochs(encoder_space)
    head_epochs_max = _stored_epochs(storage, head_name) or _epochs(head_space)
    shown = clock(request.budget_s) if request.budget_s else "the least"
    log(f"measuring what an epoch costs on this machine ({shown} budget)")
    costs = measure_costs(
        request, project, encoder_space, head_space, encoder_epochs, head_epochs_max
    )
    # The least budget has no room for retrains unless they are asked for.
    budget_s = request.budget_s or least_budget(costs, retrain=request.retrain is True)
    if not request.budget_s:
        end = started + budget_s
        log(f"budget: {clock(budget_s)}, the least this machine needs for every stage")
    plan = choose_plan(budget_s, costs, request.retrain)
    if _stored_epochs(storage, head_name):  # a resumed head study keeps its trials' length
        plan = replace(plan, head_epochs=head_epochs_max)
    log(f"plan: {plan.describe(costs)}")
    storage = project.open_storage(write=True)
    result = PipelineResult(budget_s, 0.0, plan.describe(costs))

    studies = StudyRequest(
        request.encoder,
        dataset=request.dataset,
        data_dir=request.data_dir,
        seed=request.seed,
        workers=request.workers,
        train_size=request.train_size,
        val_size=request.val_size,
        n_trials=N_TRIALS_CAP,
        trial_timeout=request.trial_timeout,
    )
    # 1. The encoder study, until its share of the budget is spent.
    encoder_study = replace(
        studies,
        warm_start=_warm_start(request, storage, request.encoder, encoder_name, log),
        target=request.encoder_target,
        epochs=encoder_epochs,
        deadline=time.time() + plan.encoder_study_s,
        epoch_s_hint=costs.encoder_epoch_s,
    )
    log_1 = stage_log(f"1/4 study {request.encoder}")
    result.rows.append(_study_stage(encoder_study, project, storage, log_1))
    # 2. Its champion, retrained and tested once.
    encoder_ref = StudyRef(request.encoder, dataset=request.dataset, data_dir=request.data_dir)
    log_2 = stage_log(f"2/4 promote {request.encoder}")
    result.rows.append(_promote_stage(encoder_ref, project, log_2, retrain=plan.retrain))
    # 3. The head study on that champion, stopping in time for the last promotion (and for
    # the baselines the head study fits when it ends).
    head_study = replace(
        studies,
        stage=HEAD.name,
        encoder=request.encoder,
        warm_start=_warm_start(request, storage, HEAD.name, head_name, log),
        target=request.head_target,
        epochs=plan.head_epochs,
        deadline=end - plan.promote_head_s - plan.overhead_s - plan.baselines_s,
        epoch_s_hint=costs.head_epoch_s,
    )
    result.rows.append(_study_stage(head_study, project, storage, stage_log("3/4 study mlp")))
    # 4. The classifier, tested once; the report.
    head_ref = StudyRef(
        HEAD.name, dataset=request.dataset, encoder=request.encoder, data_dir=request.data_dir
    )
    log_4 = stage_log("4/4 promote mlp")
    # Seeds of the champion are retrained while they still end in time for the test evaluation,
    # its baselines and the report: those the plan reserved, fewer where the head study ran
    # slower than measured, more where its last trial would not have fit and left time.
    # Without retrains, the next-best trials' own models, where validation takes them.
    head = _promote_stage(
        head_ref, project, log_4, ENSEMBLE_MEMBERS, end - plan.head_tail_s, plan.retrain
    )
    result.rows.append(head)
    result.baselines = {k: v for k, v in head.test.items() if k.startswith("test_accuracy_")}
    result.report = runner.report(request.dataset, project)
    result.wall_s = time.time() - started
    return result


def _warm_start(
    request: PipelineRequest,
    storage: optuna.storages.BaseStorage,
    stage_name: str,
    study_name: str,
    log: Log,
) -> str | None:
    """With --warm-start, the latest other study of the stage on this project, said; none for
    a study that exists already (it was warm-started, or not, when it began)."""
    if not request.warm_start or _existing(storage, study_name) is not None:
        return None
    source = latest_other(storage, stage_name, study_name)
    if source is None:
        log(f"warm start: no other {stage_name} study on this project; {study_name} starts cold")
    else:
        log(f"warm start: {study_name} begins with the best configurations of {source}")
    return source


def measure_costs(
    request: PipelineRequest,
    project: Project,
    encoder_space: SearchSpace,
    head_space: SearchSpace,
    encoder_epochs: int,
    head_epochs: int,
) -> Costs:
    """Seconds per epoch of a typical encoder trial and a typical head trial, on the real data
    (the head on an untrained encoder of the same shape: the cost does not depend on weights),
    of loading the data and of the baselines."""
    device = project.torch_device()
    seed = DEFAULT_SEED if request.seed is None else request.seed
    loading = time.perf_counter()
    splits = load_splits(
        request.dataset,
        request.data_dir,
        val_size=request.val_size,
        train_size=request.train_size,
        seed=seed,
        device=device,
    )
    load_s = time.perf_counter() - loading
    torch.manual_seed(0)
    encoder_space = encoder_space.with_fixed(data_defaults(encoder_space.fixed, splits))
    head_space = head_space.with_fixed(data_defaults(head_space.fixed, splits))
    encoder_config = encoder_space.typical_config()
    encoder = AutoencoderTask(request.encoder, splits).build(encoder_config).to(device)
    assert isinstance(encoder, Autoencoder)
    encoder_s = epoch_seconds(encoder, (splits.train_x,), (splits.val_x,), encoder_config.train)
    head_config = head_space.typical_config()
    head = MLPHead(encoder_config.model.latent_dim, head_config.head, len(splits.classes))
    train, val = (splits.train_x, splits.train_y), (splits.val_x, splits.val_y)
    if head_config.head.mode == "frozen":  # trained on latents: the encoder runs once per study
        train, val = (encode(encoder, train[0]), train[1]), (encode(encoder, val[0]), val[1])
        head_s = epoch_seconds(head.to(device), train, val, head_config.train)
    else:
        head_s = epoch_seconds(Classifier(encoder, head).to(device), train, val, head_config.train)
    baselines_s = baseline_seconds(
        lambda x: encode(encoder, x), (splits.train_x, splits.train_y), (splits.val_x, splits.val_y)
    )
    evaluation_epochs = ENCODER_EVALUATION_EPOCHS[request.encoder]
    scale = retrain_scale(len(splits.train_x), len(splits.val_x))
    return Costs(
        encoder_s,
        encoder_epochs,
        head_s,
        head_epochs,
        load_s,
        evaluation_epochs,
        baselines_s,
        scale,
    )


def _epochs(space: SearchSpace) -> int:
    return int(space.config(space.fixed).train.epochs)


def _stored_epochs(storage: optuna.storages.BaseStorage | None, name: str) -> int | None:
    """The epochs an existing study's trials run: a resumed study must keep them."""
    study = _existing(storage, name) if storage is not None else None
    if study is None:
        return None
    return StudyRecord(study).stored_settings.get("fixed", {}).get("train.epochs")


def _existing(storage: optuna.storages.BaseStorage, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def _study_stage(
    request: StudyRequest, project: Project, storage: optuna.storages.BaseStorage, log: Log
) -> StageRow:
    started = time.time()
    name = request.name
    study = _existing(storage, name)
    ended = _ended(study) if study is not None else None
    if ended:
        log(f"study {name} ended before ({ended}): skipped")
        summary = runner.summary_of(name, storage)
    else:
        summary = runner.study(request, project, log=log).summary
        if summary.counts["COMPLETE"] == 0:
            raise VaeTuneError(f"study {name}: no trial completed; see the reasons above")
    metric = _metric(storage, name)
    wall = time.time() - started
    return StageRow(
        f"study {request.stage}",
        name,
        summary.best_trial,
        metric,
        summary.best_value,
        {},
        wall,
        skipped=bool(ended),
    )


def _ended(study: optuna.Study) -> str | None:
    """Why a study needs no more trials from a pipeline, or None."""
    reason = StudyRecord(study).stop_reason
    if reason:
        return reason
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    return "its trials are done" if finished >= N_TRIALS_CAP else None


def _promote_stage(
    ref: StudyRef,
    project: Project,
    log: Log,
    members: int = 1,
    deadline: float | None = None,
    retrain: bool = True,
) -> StageRow:
    started = time.time()
    promotion = runner.promote(
        ref, project, log=log, members=members, deadline=deadline, retrain=retrain
    )
    champion = promotion.champion
    return StageRow(
        f"promote {ref.stage}",
        promotion.study_name,
        champion.trial.number,
        promotion.metric,
        champion.mean,
        dict(promotion.test),
        time.time() - started,
        skipped=promotion.reused,
    )


def _metric(storage: optuna.storages.BaseStorage, name: str) -> str:
    study = _existing(storage, name)
    return StudyRecord(study).metric if study else "?"
