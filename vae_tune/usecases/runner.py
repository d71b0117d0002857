"""The use cases behind the commands: run a study, promote it, draw its learning curve, write
the report, list studies and trials. Each opens what it needs from the project and hands the
work to the module that owns it.

They take request objects; `vae_tune.api` is the public face that builds them from a user's
keyword arguments. Loaded only when a use case runs, so `import vae_tune` and the CLI stay fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import optuna
import pandas as pd
import torch
from optuna.storages import BaseStorage

from vae_tune.analysis import tables
from vae_tune.analysis.curve import Curve, learning_curve
from vae_tune.analysis.head_baselines import record_head_baselines
from vae_tune.analysis.pareto import KNEE
from vae_tune.analysis.report import build_report, studies_of
from vae_tune.data.catalog import short_name
from vae_tune.errors import VaeTuneError
from vae_tune.evaluation.latents import IWAE_K
from vae_tune.evaluation.tasks import HeadTask, Task
from vae_tune.ops.cluster import slurm_cpus
from vae_tune.ops.workers import run_workers
from vae_tune.progress import StudyProgress
from vae_tune.project.folder import Project
from vae_tune.promotion.promote import Promotion
from vae_tune.promotion.promote import promote as promote_study
from vae_tune.record import StudyRecord
from vae_tune.space.stages import stage
from vae_tune.studies.encoders import encoder_from_lineage, refuse_fine_tuning
from vae_tune.studies.lifecycle import StudySummary, run_study, summarize
from vae_tune.studies.plan import StudyRequest, check_workers, plan_study
from vae_tune.tracking import links
from vae_tune.tracking.gallery import TOP_K, TOPK_PICTURE, best_trials, compose
from vae_tune.tracking.tracker import Tracker

Log = Callable[[str], None]


@dataclass(frozen=True)
class StudyResult:
    """A study that has run: the Optuna study, its summary, and where to watch it."""

    study: optuna.Study
    summary: StudySummary
    dashboard_command: str
    mlflow_command: str
    dashboard_url: str  # the study's trials, while `vae-tune ui` runs
    mlflow_url: str
    tracker: Tracker = field(repr=False, compare=False)

    @property
    def parent_run_id(self) -> str:
        """The study's MLflow parent run; each trial's run is a child of it."""
        return self.summary.parent_run_id

    @property
    def experiment_id(self) -> str:
        return self.summary.experiment_id

    @cached_property
    def trials(self) -> pd.DataFrame:
        """One row per trial: number, state, value(s), params, epochs, reasons, its MLflow run
        id and status and last metrics. Read from the stores on first use, not before: the
        CLI prints a summary and never needs it."""
        return tables.trials_table(self.study, self.tracker)


def study(
    request: StudyRequest, project: Project, log: Log = print, progress: StudyProgress | None = None
) -> StudyResult:
    """Run (or resume) the requested study, in this process or in `request.workers`."""
    if (cpus := slurm_cpus()) is not None and request.workers == 1:
        torch.set_num_threads(cpus)  # a SLURM task: the CPUs it was given, not the node's
    check_workers(request.workers)  # here, not in each worker: they share the memory
    plan = plan_study(request, project, log)
    if request.workers == 1 and plan.options.extras.trial_timeout is None:
        summary = run_study(
            plan.space, plan.task, plan.storage, plan.tracker, plan.options, log, progress
        )
    else:  # several workers, or a trial time-out: kept by this process over its worker(s)
        summary = run_workers(request, project, plan, log)
    if isinstance(plan.task, HeadTask):
        record_head_baselines(
            plan.tracker, summary.experiment_id, plan.task, plan.options.seed, log
        )
    s = summary
    dashboard = links.dashboard_study(project.dashboard_url, s.study_id)
    runs = links.mlflow_trials(project.mlflow_url, s.experiment_id)
    found = optuna.load_study(study_name=s.study_name, storage=plan.storage)
    commands = project.dashboard_command(), project.mlflow_command()
    return StudyResult(found, s, *commands, dashboard, runs, plan.tracker)


@dataclass(frozen=True)
class StudyRef:
    """Which study a command means: its name, or the default name of its stage."""

    stage: str
    study_name: str | None = None
    dataset: str = "fashion-mnist"
    encoder: str = "ae"
    data_dir: Path | None = None
    allow_pickle: bool = False  # a head's registered encoder may be unpickled (0.1's)

    @property
    def name(self) -> str:
        return self.study_name or stage(self.stage).study_name(self.dataset, self.encoder)


def promote(
    ref: StudyRef,
    project: Project,
    log: Log = print,
    *,
    top_k: int = 3,
    seeds: int = 0,
    force: bool = False,
    pick: str = KNEE,
    iwae_k: int = IWAE_K,
    members: int = 1,
    mirror: bool | None = None,
    deadline: float | None = None,
    retrain: bool = True,
) -> Promotion:
    """Promote the best trials of a study: one retrain (one per member, those that end by the
    deadline; none without `retrain`), one test evaluation, registered."""
    storage, tracker = project.open_stores()
    record, task = finished_study(ref, project, storage, tracker, log)
    result = promote_study(
        record,
        task,
        tracker,
        data_dir=ref.data_dir,
        top_k=top_k,
        seeds=seeds,
        force=force,
        pick=pick,
        iwae_k=iwae_k,
        members=members,
        mirror=mirror,
        deadline=deadline,
        retrain=retrain,
        log=log,
    )
    path = _write_report(project, storage, tracker, record.settings.dataset)
    tracker.log_text(result.record.run_id, path.read_text(), "report.md")
    log(f"report: {project.shown(path)}")
    return result


def curve(ref: StudyRef, sizes: tuple[int, ...], project: Project, log: Log = print) -> Curve:
    """The promoted configuration of a study retrained on growing subsets, each tested once."""
    storage, tracker = project.open_stores()
    record, task = finished_study(ref, project, storage, tracker, log)
    result = learning_curve(record, task, sizes, tracker, data_dir=ref.data_dir, log=log)
    path = _write_report(project, storage, tracker, record.settings.dataset)
    log(f"report: {project.shown(path)}")
    return result


def report(dataset: str, project: Project) -> Path:
    """Write reports/DATASET.md and attach it to every promotion run of the dataset's studies."""
    storage, tracker = project.open_stores()
    path = _write_report(project, storage, tracker, dataset)
    text = path.read_text()
    for study_ in studies_of(storage, dataset):
        for promoted in StudyRecord(study_).promotions.values():
            tracker.log_text(promoted.run_id, text, "report.md")
    return path


def compare(
    ref: StudyRef, project: Project, top: int = TOP_K, numbers: tuple[int, ...] = ()
) -> tuple[Path, str]:
    """The picture of some trials' reconstructions side by side (the best `top`, or the
    trials numbered), on the study's parent run and in reports/. Returns both places."""
    storage, tracker = project.open_stores()
    record = StudyRecord.load(ref.name, storage)
    study = record.live
    if numbers:
        unknown = [n for n in numbers if n >= len(study.trials)]
        if unknown:
            raise VaeTuneError(
                f"--trials {unknown}: {ref.name} has trials 0 to {len(study.trials) - 1}"
            )
        trials = [study.trials[n] for n in numbers]
        name = "compare/recon_trials_" + "-".join(map(str, numbers)) + ".png"
    else:
        trials, name = best_trials(study, top), TOPK_PICTURE
    picture = compose(tracker, trials, record.metric)
    if record.parent_run_id:
        tracker.log_artifact_bytes(record.parent_run_id, name, picture)
    project.reports.mkdir(parents=True, exist_ok=True)
    path = project.reports / f"{ref.name}-{Path(name).stem}.png"
    path.write_bytes(picture)
    return path, name


def status(project: Project) -> list[dict[str, object]]:
    return tables.study_rows(project.open_storage())


def trials_table(ref: StudyRef, project: Project) -> tuple[optuna.Study, pd.DataFrame]:
    """A study's trials joined with their MLflow runs."""
    storage, tracker = project.open_stores()
    record = StudyRecord.load(ref.name, storage)
    return record.live, tables.trials_table(record.live, tracker)


def summary_of(study_name: str, storage: BaseStorage) -> StudySummary:
    """The summary of a study that has run, without running it."""
    return summarize(StudyRecord.load(study_name, storage).live)


def finished_study(
    ref: StudyRef, project: Project, storage: BaseStorage, tracker: Tracker, log: Log
) -> tuple[StudyRecord, Task]:
    """A study that has run, and the task it trained, rebuilt from the settings stored on it:
    the same split, and for a head the very encoder it was trained on."""
    record = StudyRecord.load(ref.name, storage)
    settings = record.settings
    if settings.stage != ref.stage:
        raise VaeTuneError(f"study {ref.name!r} is a {settings.stage} study")
    device = project.torch_device()
    encoder = None
    if stage(ref.stage).needs_encoder:
        model = encoder_from_lineage(
            settings.encoder,
            storage,
            tracker,
            project.encoder_cache,
            data_dir=ref.data_dir,
            device=device,
            log=log,
            allow_pickle=ref.allow_pickle,
        )
        refuse_fine_tuning(record.space(), model)
        encoder = (model, settings.encoder)
    splits = record.splits(ref.data_dir, device)
    return record, stage(ref.stage).make_task(splits, encoder)


def _write_report(project: Project, storage: BaseStorage, tracker: Tracker, dataset: str) -> Path:
    project.reports.mkdir(parents=True, exist_ok=True)
    path = project.reports / f"{short_name(dataset)}.md"
    path.write_text(build_report(storage, tracker, dataset, project.reports))
    return path
