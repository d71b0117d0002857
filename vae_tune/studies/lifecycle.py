"""A study's life: open (or resume) it, run trials in this process, close it.

A study is one MLflow parent run and its trials child runs (see `objective.py`). It keeps the
exact search-space text and data settings it started with, so a rerun resumes it and a changed
space is refused; crashed trials are repaired when it opens; `stopping.py` decides when no
more trials start.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import optuna_dashboard
import torch
from optuna.trial import FrozenTrial, TrialState

from vae_tune.data.splits import holdout_of
from vae_tune.evaluation.pictures import SHOWN
from vae_tune.evaluation.tasks import Task
from vae_tune.progress import PlainProgress, StudyProgress
from vae_tune.record import Settings, StudyRecord, TrialRecord
from vae_tune.space.extras import Extras
from vae_tune.space.spaces import SearchSpace
from vae_tune.studies.objective import Objective, TrialContext
from vae_tune.studies.repair import repair, retry_interrupted, worker_identity, zombie_trials
from vae_tune.studies.resume import (
    await_creator,
    check_resume,
    optuna_study,
    parent_run,
    record_extras,
)
from vae_tune.studies.stopping import (
    FINISHED,
    Pace,
    await_places,
    stop_at_target,
    stop_before_deadline,
    stop_on_patience,
    stop_when_taken,
    stopped_already,
)
from vae_tune.studies.timeouts import guarded
from vae_tune.studies.warm_start import warm_start
from vae_tune.tracking import mlflow_view, notes
from vae_tune.tracking.gallery import Gallery
from vae_tune.tracking.tracker import Tracker

Log = Callable[[str], None]


@dataclass(frozen=True)
class StudyOptions:
    study_name: str
    n_trials: int
    timeout: float | None = None
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    force: bool = False  # resume even if the space or settings changed, recording the new ones
    patience: int | None = None  # stop after this many finished trials without a new best
    deadline: float | None = None  # time.time(): start no trial that could not end before it
    epoch_s_hint: float | None = None  # a measured epoch time, before any trial has run
    artifact_dir: Path | None = None  # optuna-dashboard's artifact store (trial pictures)
    dashboard_url: str | None = None  # where optuna-dashboard serves: trial runs link there
    extras: Extras = field(default_factory=Extras)  # warm start, trial time-out, target


@dataclass(frozen=True)
class StudySummary:
    study_name: str
    counts: dict[str, int]  # trial state name -> number of trials
    best_value: float | None
    best_params: dict[str, Any]
    best_trial: int | None
    best_run_id: str | None
    experiment_id: str
    parent_run_id: str
    stop_reason: str | None = None  # why the study stopped before n_trials (patience, budget)
    study_id: int = 0  # the storage's id: optuna-dashboard's URLs use it
    metric: str = ""
    direction: str = "minimize"
    pareto: list[int] = field(default_factory=list)  # a multi-objective study's front


@dataclass(frozen=True)
class OpenStudy:
    """A study ready for trials, with its MLflow experiment and parent run."""

    study: optuna.Study
    experiment_id: str
    parent_run_id: str
    note: str = ""  # the study's note in optuna-dashboard

    @property
    def record(self) -> StudyRecord:
        return StudyRecord(self.study)


def run_study(
    space: SearchSpace,
    task: Task,
    storage: optuna.storages.BaseStorage,
    tracker: Tracker,
    options: StudyOptions,
    log: Log = print,
    progress: StudyProgress | None = None,
) -> StudySummary:
    """Create or resume the study and run trials until `n_trials` have finished."""
    opened = open_study(space, study_settings(space, task, options), storage, tracker, options, log)
    run_trials(opened, space, task, tracker, options, progress or PlainProgress(log), log)
    return close_study(opened, tracker, log)


def study_settings(space: SearchSpace, task: Task, options: StudyOptions) -> Settings:
    """What must stay the same for trials of one study to be comparable."""
    s = task.splits
    return Settings(
        space.stage,
        s.dataset,
        len(s.train_x),
        len(s.val_x),
        options.seed,
        dict(space.fixed),
        dict(task.lineage),
        holdout_of(s.dataset) or {},
    )


def open_study(
    space: SearchSpace,
    settings: Settings,
    storage: optuna.storages.BaseStorage,
    tracker: Tracker,
    options: StudyOptions,
    log: Log = print,
) -> OpenStudy:
    """Create or resume the study: check it matches, open its parent run, heal crashed trials."""
    study, created = optuna_study(space, storage, options.study_name, options.seed)
    record = StudyRecord(study)
    if created:  # first: processes that lost the race to create it wait for its parent run
        record.set_creator(worker_identity())
    else:
        await_creator(record)
    check_resume(record, space, settings, options.force, log)
    experiment_id = tracker.experiment_id(options.study_name)
    mlflow_view.save_view(tracker, experiment_id, space)  # the UI's view of the trials
    # A study another vae-tune process is creating: wait for the parent run it opens.
    waits = not created and record.creator is not None
    parent_run_id = parent_run(record, tracker, experiment_id, space, settings, not waits)
    link = tracker.run_link(experiment_id, parent_run_id)
    shown = record_extras(record, tracker, parent_run_id, options.extras)
    note = notes.study_note(space, settings, link, parent_run_id, tracker.ui_url, experiment_id)
    note = notes.with_options(note, shown)
    optuna_dashboard.save_note(study, note)
    for line in repair(study, tracker).lines():
        log(f"repaired: {line}")
    warm_start(study, space, options.extras.warm_start, options.n_trials, log)
    return OpenStudy(study, experiment_id, parent_run_id, note)


def join_study(
    space: SearchSpace, storage: optuna.storages.BaseStorage, options: StudyOptions
) -> OpenStudy:
    """Another worker's handle on a study `open_study` prepared."""
    study, _ = optuna_study(space, storage, options.study_name, options.seed, create=False)
    record = StudyRecord(study)
    assert record.experiment_id and record.parent_run_id, "open_study prepares the study first"
    return OpenStudy(study, record.experiment_id, record.parent_run_id)


def run_trials(
    opened: OpenStudy,
    space: SearchSpace,
    task: Task,
    tracker: Tracker,
    options: StudyOptions,
    progress: StudyProgress,
    log: Log = print,
    workers: int = 1,
) -> None:
    """Run trials in this process until the study holds `n_trials` finished ones, or a stop
    rule fires. A Ctrl-C or a storage failure closes the parent run (KILLED or FAILED)."""
    study, metric = opened.study, space.settings.metric
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    remaining = max(0, options.n_trials - finished)
    epochs = int(space.config(space.fixed).train.epochs)
    pace = Pace(options.epoch_s_hint)
    if workers == 1:
        log(
            f"study {options.study_name}: {finished} trials finished, running {remaining} more "
            f"({_objectives(space)})"
        )
    o, x = options, options.extras
    stop_reason = (
        stopped_already(study, o.patience, x.target, o.deadline, pace, epochs)
        if remaining
        else None
    )
    if stop_reason:
        opened.record.set_stop_reason(stop_reason)
        log(f"study {options.study_name}: stopped, {stop_reason}")
    if not remaining or stop_reason:
        return
    if opened.record.stop_reason:  # one that no longer holds: this session runs trials
        opened.record.set_stop_reason(None)
    # Interrupted trials of any process are enqueued again as soon as one process sees them.
    callbacks = [stop_when_taken(options.n_trials), _retry_interrupted]
    if options.patience:
        callbacks.append(stop_on_patience(options.patience))
    if x.target is not None:
        callbacks.append(stop_at_target(x.target))
    started = time.time()
    until = started + options.timeout if options.timeout else math.inf
    if options.deadline is not None:
        callbacks.append(stop_before_deadline(options.deadline, epochs, pace))
        until = min(until, max(started + 1.0, options.deadline))
    progress.begin(trials=-(-remaining // workers), epochs=epochs, deadline=options.deadline)

    gallery = None
    if task.pictured:  # the same validation images in every trial's picture
        gallery = Gallery(
            tracker, task.splits.val_x[:SHOWN], opened.parent_run_id, metric, options.artifact_dir
        )

    def redraw_topk(study: optuna.Study, ended: FrozenTrial | None = None) -> None:
        if gallery is not None:
            try:
                gallery.update_topk(study, now=ended is None, ended=ended)
            except Exception as exc:  # a picture is a nicety: the study goes on without it
                log(f"the top-{gallery.top_k} picture was not redrawn: {type(exc).__name__}: {exc}")

    def trial_ended(study: optuna.Study, trial: FrozenTrial) -> None:
        line = notes.trial_line(trial, metric)
        progress.trial_ended(trial.number, len(trial.intermediate_values), line)
        mlflow_view.mark_best(tracker, study, trial, log)
        redraw_topk(study, trial)

    context = TrialContext(
        space,
        task,
        tracker,
        options.study_name,
        opened.experiment_id,
        opened.parent_run_id,
        options.n_trials,
        options.seed,
        options.device,
        gallery,
        options.dashboard_url,
    )
    objective = guarded(Objective(context, progress))  # --trial-timeout interrupts it
    try:
        while remaining:
            study.optimize(
                objective,
                n_trials=remaining,
                timeout=max(1.0, until - time.time()) if until != math.inf else None,
                catch=(Exception,),  # a failed trial is recorded; the study goes on
                callbacks=[trial_ended, *callbacks],
            )
            remaining = await_places(study, tracker, options.n_trials, until, log)
    except KeyboardInterrupt:  # the parent run is closed by the last process to leave
        if not others_running(study):
            tracker.end_run(opened.parent_run_id, "KILLED", {"vae_tune.interrupted": "true"})
        raise
    except Exception as exc:  # a storage or tracking failure: the parent run must not stay open
        if not others_running(study):
            reason = f"{type(exc).__name__}: {exc}"
            tracker.end_run(opened.parent_run_id, "FAILED", {"fail_reason": reason})
        raise
    finally:
        progress.close()
    redraw_topk(study)  # the best trials as they ended, however recent the last redraw
    timed_out = options.timeout and time.time() - started >= options.timeout
    if timed_out and not opened.record.stop_reason:
        opened.record.set_stop_reason(f"timeout: --timeout {options.timeout:.0f} s reached")


def _retry_interrupted(study: optuna.Study, trial: FrozenTrial) -> None:
    retry_interrupted(study)


def close_study(opened: OpenStudy, tracker: Tracker, log: Log = print) -> StudySummary:
    """Log the study's totals on its parent run and close it FINISHED, once: by the last
    process to leave, when no trial runs elsewhere (one that leaves earlier leaves it open to
    the others). First the runs of trials that others ended (a stale heartbeat) are closed."""
    if others_running(opened.study):
        log(f"study {opened.study.study_name}: other processes go on; the last one closes it")
        return summarize(opened.study)
    repair(opened.study, tracker, retry=False)
    summary = summarize(opened.study)
    if summary.stop_reason and opened.note:
        optuna_dashboard.save_note(
            opened.study, notes.stopped_note(opened.note, summary.stop_reason)
        )
    totals: dict[str, float] = {f"n_{s.lower()}": n for s, n in summary.counts.items()}
    if summary.best_value is not None:
        totals["best_value"] = summary.best_value
    tracker.log_metrics(opened.parent_run_id, totals, step=len(opened.study.trials))
    tags = {"best_trial": summary.best_trial, "best_run_id": summary.best_run_id}
    if summary.stop_reason:
        tags["stop_reason"] = summary.stop_reason
    mlflow_view.mark_best(tracker, opened.study, log=log)
    tracker.end_run(opened.parent_run_id, "FINISHED", tags)
    return summary


def others_running(study: optuna.Study) -> bool:
    """Whether a trial of the study runs in a process that is alive (a zombie does not count:
    this process's own trials have all ended when it asks)."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    zombies = {t.number for t in zombie_trials(study)}
    return any(t.number not in zombies for t in running)


def summarize(study: optuna.Study) -> StudySummary:
    trials = study.get_trials(deepcopy=False)
    counts = {state.name: 0 for state in (*FINISHED, TrialState.FAIL, TrialState.RUNNING)}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    multi = len(study.directions) > 1
    best = study.best_trial if counts["COMPLETE"] and not multi else None
    record = StudyRecord(study)
    return StudySummary(
        study_name=study.study_name,
        counts=counts,
        best_value=best.value if best else None,
        best_params=dict(best.params) if best else {},
        best_trial=best.number if best else None,
        best_run_id=TrialRecord(best).run_id if best else None,
        experiment_id=record.experiment_id or "",
        parent_run_id=record.parent_run_id or "",
        stop_reason=record.stop_reason,
        study_id=study._study_id,
        metric=record.metric,
        direction=study.directions[0].name.lower(),
        pareto=sorted(t.number for t in study.best_trials) if multi else [],
    )


def _objectives(space: SearchSpace) -> str:
    s = space.settings
    shown = ", ".join(f"{m} ({d})" for m, d in zip(s.metrics, s.directions, strict=True))
    return f"objectives {shown}, no pruning" if s.multi else f"metric {shown}"
