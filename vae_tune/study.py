"""The trial loop: the only module that knows both Optuna and MLflow.

Optuna decides (sampling, pruning, trial states); MLflow records. A study is one MLflow parent
run, each trial a child run closed in a terminal state that mirrors Optuna's (COMPLETE ->
FINISHED, PRUNED -> KILLED, FAIL -> FAILED). The study keeps the exact search-space text and
data settings it started with, so a rerun resumes it and a changed space is refused.
"""

from __future__ import annotations

import gc
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import optuna_dashboard
import torch
from optuna.trial import FrozenTrial, TrialState

from vae_tune.config import TrialConfig
from vae_tune.data import Splits, load_splits
from vae_tune.errors import StudyMismatchError, VaeTuneError
from vae_tune.progress import EpochUpdate, PlainProgress, StudyProgress
from vae_tune.repair import repair, worker_identity
from vae_tune.samplers import make_pruner, make_sampler
from vae_tune.space import SearchSpace, parse_space
from vae_tune.stopping import (
    FINISHED,
    Pace,
    patience_spent,
    stop_before_deadline,
    stop_on_patience,
    stop_when_taken,
    surplus,
)
from vae_tune.tasks import Task
from vae_tune.tracking import RUN_STATUS, Tracker
from vae_tune.train import EpochResult, fit

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


def trial_seed(study_seed: int, trial_number: int) -> int:
    """A per-trial seed from (study seed, trial number): independent of worker and order."""
    return int(np.random.SeedSequence([study_seed, trial_number]).generate_state(1)[0])


def load_existing(study_name: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise VaeTuneError(
            f"no study {study_name!r} in the storage: run `vae-tune study` for it first"
        ) from None


def replay_config(study: optuna.Study, trial: FrozenTrial) -> TrialConfig:
    """A finished trial's config through the path the study sampled it with: the space text
    stored on the study, its fixed values as the study ran, and the trial's own params."""
    space = parse_space(study.user_attrs["search_space"], f"study {study.study_name}")
    space = space.with_fixed(study.user_attrs["settings"]["fixed"])
    return space.config(space.sample(optuna.trial.FixedTrial(trial.params)))


def study_splits(study: optuna.Study, data_dir: Path | None, device: torch.device) -> Splits:
    """The train/validation split a study ran on, from the settings stored on it."""
    settings = study.user_attrs["settings"]
    return load_splits(
        settings["dataset"],
        data_dir,
        val_size=settings["val_size"],
        train_size=settings["train_size"],
        seed=settings["seed"],
        device=device,
    )


@dataclass(frozen=True)
class OpenStudy:
    """A study ready for trials, with its MLflow experiment and parent run."""

    study: optuna.Study
    experiment_id: str
    parent_run_id: str
    note: str = ""  # the study's note in optuna-dashboard


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
    opened = open_study(space, run_settings(space, task, options), storage, tracker, options, log)
    run_trials(opened, space, task, tracker, options, progress or PlainProgress(log), log)
    return close_study(opened, tracker)


def open_study(
    space: SearchSpace,
    settings: dict[str, Any],
    storage: optuna.storages.BaseStorage,
    tracker: Tracker,
    options: StudyOptions,
    log: Log = print,
) -> OpenStudy:
    """Create or resume the study: check it matches, open its parent run, heal crashed trials."""
    study = _optuna_study(space, storage, options.study_name, options.seed)
    _check_resume(study, space, settings, options.force)
    experiment_id = tracker.experiment_id(options.study_name)
    parent_run_id = _parent_run(study, tracker, experiment_id, space, settings)
    note = _study_note(space, settings, tracker, experiment_id, parent_run_id)
    optuna_dashboard.save_note(study, note)
    study.set_user_attr("stop_reason", None)  # this session decides anew
    for line in repair(study, tracker).lines():
        log(f"repaired: {line}")
    return OpenStudy(study, experiment_id, parent_run_id, note)


def join_study(
    space: SearchSpace,
    storage: optuna.storages.BaseStorage,
    options: StudyOptions,
    worker: int,
) -> OpenStudy:
    """Another worker's handle on a study `open_study` prepared, with its own sampler seed."""
    study = _optuna_study(space, storage, options.study_name, options.seed, worker, create=False)
    attrs = study.user_attrs
    return OpenStudy(study, attrs["mlflow_experiment_id"], attrs["mlflow_parent_run_id"])


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
    """Run trials in this process until the study holds `n_trials` finished ones. A Ctrl-C or
    a storage failure closes the parent run (KILLED or FAILED) before it propagates."""
    study, metric = opened.study, space.settings.metric
    finished = len(study.get_trials(deepcopy=False, states=FINISHED))
    remaining = max(0, options.n_trials - finished)
    epochs = int(space.config(space.fixed).train.epochs)
    pace = Pace(options.epoch_s_hint)
    if workers == 1:
        log(
            f"study {options.study_name}: {finished} trials finished, running {remaining} more "
            f"(metric {metric}, {space.settings.direction})"
        )
    stop_reason = options.patience and patience_spent(study, options.patience)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    # A deadline never leaves a study without a result: the first trial runs regardless.
    if remaining and complete and options.deadline and not pace.fits(options.deadline, epochs):
        stop_reason = "budget: no time left for a trial"
    if stop_reason:
        study.set_user_attr("stop_reason", stop_reason)
        log(f"study {options.study_name}: stopped, {stop_reason}")
    if not remaining or stop_reason:
        return
    callbacks = [stop_when_taken(options.n_trials)]
    if options.patience:
        callbacks.append(stop_on_patience(options.patience))
    timeout = options.timeout
    if options.deadline is not None:
        callbacks.append(stop_before_deadline(options.deadline, epochs, pace))
        timeout = min(timeout or math.inf, max(1.0, options.deadline - time.time()))
    progress.begin(trials=-(-remaining // workers), epochs=epochs)

    def trial_ended(study: optuna.Study, trial: FrozenTrial) -> None:
        progress.trial_ended(
            trial.number, len(trial.intermediate_values), _trial_line(trial, metric)
        )

    objective = _Objective(space, task, tracker, options, opened, progress)
    try:
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=timeout if timeout != math.inf else None,
            catch=(Exception,),  # a failed trial is recorded; the study goes on
            callbacks=[trial_ended, *callbacks],
        )
    except KeyboardInterrupt:
        tracker.end_run(opened.parent_run_id, "KILLED", {"vae_tune.interrupted": "true"})
        raise
    except Exception as exc:  # a storage or tracking failure: the parent run must not stay open
        reason = f"{type(exc).__name__}: {exc}"
        tracker.end_run(opened.parent_run_id, "FAILED", {"fail_reason": reason})
        raise
    finally:
        progress.close()


def close_study(opened: OpenStudy, tracker: Tracker) -> StudySummary:
    """Log the study's totals on its parent run and close it FINISHED."""
    summary = summarize(opened.study, opened.experiment_id, opened.parent_run_id)
    if summary.stop_reason and opened.note:
        optuna_dashboard.save_note(
            opened.study, f"**Stopped early**: {summary.stop_reason}\n\n{opened.note}"
        )
    tracker.log_metrics(
        opened.parent_run_id,
        {f"n_{state.lower()}": n for state, n in summary.counts.items()}
        | ({"best_value": summary.best_value} if summary.best_value is not None else {}),
        step=len(opened.study.trials),
    )
    tags = {"best_trial": summary.best_trial, "best_run_id": summary.best_run_id}
    if summary.stop_reason:
        tags["stop_reason"] = summary.stop_reason
    tracker.end_run(opened.parent_run_id, "FINISHED", tags)
    return summary


def _optuna_study(
    space: SearchSpace,
    storage: optuna.storages.BaseStorage,
    name: str,
    seed: int,
    worker: int = 0,
    create: bool = True,
) -> optuna.Study:
    settings = space.settings
    epochs = int(space.config(space.fixed).train.epochs)
    pruner = make_pruner(settings.pruner, max_epochs=epochs)
    if create:
        study = optuna.create_study(storage=storage, study_name=name, pruner=pruner,
                                    direction=settings.direction, load_if_exists=True)  # fmt: skip
    else:
        study = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
    # Optuna's samplers draw from one random stream per process: with one seed, every worker
    # and every resumed session would replay the same start-up configs. The seed is derived
    # from (seed, trials already in the study, worker): distinct, and still reproducible.
    derived = np.random.SeedSequence([seed, len(study.trials), worker]).generate_state(1)[0]
    study.sampler = make_sampler({**settings.sampler, "seed": int(derived)}, seed=seed)
    return study


class SurplusTrialError(VaeTuneError):
    """Raised for a trial started after other workers had taken the study's last trials."""


def summarize(study: optuna.Study, experiment_id: str, parent_run_id: str) -> StudySummary:
    trials = study.get_trials(deepcopy=False)
    counts = {state.name: 0 for state in (*FINISHED, TrialState.FAIL, TrialState.RUNNING)}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    best = None
    if counts["COMPLETE"]:
        best = study.best_trial
    return StudySummary(
        study_name=study.study_name,
        counts=counts,
        best_value=best.value if best else None,
        best_params=dict(best.params) if best else {},
        best_trial=best.number if best else None,
        best_run_id=best.user_attrs.get("mlflow_run_id") if best else None,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        stop_reason=study.user_attrs.get("stop_reason"),
    )


class _Objective:
    """One trial: sample, train with per-epoch reports, record in MLflow, return the metric."""

    def __init__(
        self,
        space: SearchSpace,
        task: Task,
        tracker: Tracker,
        options: StudyOptions,
        opened: OpenStudy,
        progress: StudyProgress,
    ) -> None:
        self.space, self.task, self.tracker, self.options = space, task, tracker, options
        self.experiment_id, self.parent_run_id = opened.experiment_id, opened.parent_run_id
        self.progress = progress
        self.metric = space.settings.metric
        self.maximize = space.settings.direction == "maximize"

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker_identity())  # first: lets a later start find a zombie
        if surplus(trial, self.options.n_trials):
            trial.study.stop()
            trial.set_user_attr("fail_reason", "surplus: other workers took the last trials")
            raise SurplusTrialError(f"trial {trial.number}: n_trials already taken")
        flat = self.space.sample(trial)
        config = self.space.config(flat)
        seed = trial_seed(self.options.seed, trial.number)
        trial.set_user_attr("seed", seed)
        run_id = self.tracker.start_run(
            self.experiment_id,
            f"trial-{trial.number:03d}",
            params={**flat, "seed": seed, "data.train_size": len(self.task.splits.train_x)},
            tags={
                "optuna.study_name": self.options.study_name,
                "optuna.trial_number": trial.number,
                "vae_tune.stage": self.space.stage,
                **self.task.lineage,
            },
            parent_run_id=self.parent_run_id,
        )
        trial.set_user_attr("mlflow_run_id", run_id)
        self.progress.trial_started(trial.number)

        torch.manual_seed(seed)
        model = self.task.build(config).to(self.options.device)
        train, val = self.task.data(config)
        min_kl = self.space.settings.min_kl
        best: EpochResult | None = None

        def on_epoch_end(result: EpochResult) -> None:
            nonlocal best
            self.tracker.log_metrics(run_id, result.metrics, step=result.epoch)
            value = result.metrics[self.metric]
            if best is None or (value > best.metrics[self.metric]) == self.maximize:
                best = result
            trial.report(value, result.epoch)
            update = EpochUpdate(
                trial.number,
                result.epoch,
                config.train.epochs,
                self.metric,
                value,
                best.metrics[self.metric],
                _study_best(trial.study),
            )
            self.progress.epoch(update, result.metrics["epoch_time_s"])  # fmt: skip
            kl = result.metrics.get("val_kl")
            reason = None
            if min_kl is not None and kl is not None and result.epoch >= 2 and kl < min_kl:
                reason = f"posterior collapse at epoch {result.epoch}: KL {kl:.3g} < {min_kl} nats"
            elif trial.should_prune():
                reason = f"pruned at epoch {result.epoch}: {self.metric}={value:.5g}"
            if reason:
                trial.set_user_attr("pruned_at_epoch", result.epoch)
                raise optuna.TrialPruned(reason)

        try:
            fit(
                model,
                train,
                val,
                config.train,
                seed=seed,
                on_epoch_end=on_epoch_end,
            )
        except optuna.TrialPruned as exc:
            trial.set_user_attr("prune_reason", str(exc))
            self._end(
                trial,
                run_id,
                "PRUNED",
                {"pruned_at_epoch": trial.user_attrs["pruned_at_epoch"], "prune_reason": str(exc)},
            )
            raise
        except BaseException as exc:  # KeyboardInterrupt too: no run may stay RUNNING
            reason = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("fail_reason", reason)
            interrupted = isinstance(exc, KeyboardInterrupt)
            if interrupted:  # not the config's fault: the next start runs it again
                trial.set_user_attr("interrupted", True)
            status = "KILLED" if interrupted else None
            self._end(trial, run_id, "FAIL", {"fail_reason": reason}, status=status)
            raise
        finally:
            del model, train, val
            _free_memory(self.options.device)

        assert best is not None  # fit ran at least one epoch
        trial.set_user_attr("best_epoch", best.epoch)
        value = best.metrics[self.metric]
        self.tracker.log_metrics(
            run_id, {f"best_{self.metric}": value, "best_epoch": best.epoch}, step=best.epoch
        )
        outcome = f"{self.metric} {value:.5g} at epoch {best.epoch}"
        self._end(trial, run_id, "COMPLETE", {"best_epoch": best.epoch}, outcome=outcome)
        return value

    def _end(
        self,
        trial: optuna.Trial,
        run_id: str,
        state: str,
        tags: dict,
        status: str | None = None,
        outcome: str | None = None,
    ) -> None:
        """Close the trial's MLflow run and leave a note on the trial for optuna-dashboard."""
        self.tracker.end_run(
            run_id, status or RUN_STATUS[state], {"optuna.trial_state": state, **tags}
        )
        outcome = outcome or ", ".join(f"{k}: {_short(v)}" for k, v in tags.items())
        rows = [f"| `{k}` | {_short(v)} |" for k, v in trial.params.items()]
        link = self.tracker.run_link(self.experiment_id, run_id)
        optuna_dashboard.save_note(
            trial,
            "\n".join([f"**{state}** ({outcome})", "", "| param | value |", "|---|---|", *rows,
                       "", f"MLflow run [{run_id}]({link}), seed {trial.user_attrs['seed']}"]),
        )  # fmt: skip


def run_settings(space: SearchSpace, task: Task, options: StudyOptions) -> dict[str, Any]:
    """What must stay the same for trials of one study to be comparable."""
    return {
        "stage": space.stage,
        "dataset": task.splits.dataset,
        "train_size": len(task.splits.train_x),
        "val_size": len(task.splits.val_x),
        "seed": options.seed,
        "fixed": dict(space.fixed),
        **({"encoder": task.lineage} if task.lineage else {}),
    }


def _check_resume(
    study: optuna.Study, space: SearchSpace, run_settings: dict[str, Any], force: bool
) -> None:
    attrs = study.user_attrs
    stored = attrs.get("settings")
    current = json.loads(json.dumps(run_settings))  # as the storage returns it: tuples -> lists
    if "search_space" in attrs and not force:
        if attrs["search_space"] != space.text:
            raise StudyMismatchError(
                f"study {study.study_name!r} was started with another search space "
                f"(stored on the study as user attribute 'search_space'). Use another "
                f"--study-name, or --force to continue with {space.source}."
            )
        if stored != current:
            changed = sorted(k for k in current if stored.get(k) != current[k])
            raise StudyMismatchError(
                f"study {study.study_name!r} was started with other settings: "
                f"{ {k: stored.get(k) for k in changed} }. Use the same options, another "
                "--study-name, or --force."
            )
    study.set_user_attr("search_space", space.text)
    study.set_user_attr("search_space_file", space.source)
    study.set_user_attr("settings", current)
    study.set_user_attr("metric", space.settings.metric)
    with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in practice
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([space.settings.metric])


def _parent_run(
    study: optuna.Study,
    tracker: Tracker,
    experiment_id: str,
    space: SearchSpace,
    run_settings: dict[str, Any],
) -> str:
    """The study's MLflow run: the one stored on the study if it still exists, else a new one."""
    run_id = study.user_attrs.get("mlflow_parent_run_id")
    if run_id and tracker.run_exists(run_id):
        tracker.resume_run(run_id)
        return run_id
    params = {f"fixed.{k}": v for k, v in space.fixed.items()}
    params |= {k: v for k, v in run_settings.items() if k not in ("fixed", "encoder")}
    params |= {
        "study.metric": space.settings.metric,
        "study.direction": space.settings.direction,
        "study.sampler": json.dumps(dict(space.settings.sampler)),
        "study.pruner": json.dumps(dict(space.settings.pruner)),
    }
    run_id = tracker.start_run(
        experiment_id,
        study.study_name,
        params=params,
        tags={
            "optuna.study_name": study.study_name,
            "vae_tune.role": "study",
            **run_settings.get("encoder", {}),
        },
    )
    tracker.log_text(run_id, space.text, "search_space.yaml")
    study.set_user_attr("mlflow_parent_run_id", run_id)
    study.set_user_attr("mlflow_experiment_id", experiment_id)
    study.set_user_attr("mlflow_tracking_uri", tracker.tracking_uri)
    return run_id


def _study_note(
    space: SearchSpace,
    run_settings: dict[str, Any],
    tracker: Tracker,
    experiment_id: str,
    parent_run_id: str,
) -> str:
    """The study's note in optuna-dashboard: its settings, its MLflow run, its search space."""
    settings = "\n".join(f"- {k}: `{v}`" for k, v in run_settings.items() if k != "fixed")
    link = tracker.run_link(experiment_id, parent_run_id)
    return (
        f"**{space.stage} study**, metric `{space.settings.metric}` ({space.settings.direction}),"
        f" sampler `{dict(space.settings.sampler)}`, pruner `{dict(space.settings.pruner)}`\n\n"
        f"{settings}\n\nMLflow parent run [{parent_run_id}]({link})\n\n"
        f"Search space ({space.source}):\n\n```yaml\n{space.text}\n```"
    )


def _trial_line(trial: FrozenTrial, metric: str) -> str:
    if trial.state == TrialState.COMPLETE:
        params = " ".join(f"{k}={_short(v)}" for k, v in trial.params.items())
        return f"trial {trial.number} COMPLETE {metric} {trial.value:.5g}  {params}"
    if trial.state == TrialState.PRUNED:
        return f"trial {trial.number} PRUNED: {trial.user_attrs.get('prune_reason')}"
    return f"trial {trial.number} {trial.state.name}: {trial.user_attrs.get('fail_reason')}"


def _study_best(study: optuna.Study) -> str:
    try:
        return f"{study.best_value:.5g}"
    except ValueError:  # no complete trial yet
        return "-"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _free_memory(device: torch.device) -> None:
    """Models of earlier trials must not pile up on the GPU."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
