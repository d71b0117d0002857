"""One trial: sample a config, train it with a report per epoch, mirror it in MLflow.

Optuna decides (sampling, pruning, the trial's state); MLflow records. Every trial's run ends in
the status that mirrors its state (COMPLETE -> FINISHED, PRUNED -> KILLED, FAIL -> FAILED;
interrupted -> KILLED), and every trial gets a note in optuna-dashboard.
"""

from __future__ import annotations

import gc
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import optuna_dashboard
import torch

from vae_tune.errors import VaeTuneError
from vae_tune.evaluation import plots
from vae_tune.evaluation.calibrate import resolved
from vae_tune.evaluation.latents import PROBE
from vae_tune.evaluation.tasks import Task
from vae_tune.failures import OUT_OF_MEMORY, infrastructure
from vae_tune.models import contract
from vae_tune.models.config import TrialConfig
from vae_tune.models.contract import UserModelError
from vae_tune.models.nets import Autoencoder, Model
from vae_tune.models.train import EpochResult, fit
from vae_tune.progress import EpochUpdate, StudyProgress
from vae_tune.record import TrialRecord
from vae_tune.space.spaces import SearchSpace
from vae_tune.space.stages import stage
from vae_tune.studies.repair import duplicate_retry, worker_identity
from vae_tune.studies.stopping import surplus
from vae_tune.tracking import kept, links, mlflow_view, notes
from vae_tune.tracking.gallery import Gallery
from vae_tune.tracking.metrics import MetricBuffer
from vae_tune.tracking.tracker import RUN_STATUS, Tracker


class SurplusTrialError(VaeTuneError):
    """Raised for a trial that yields as it starts: other workers had taken the study's last
    trials, or another copy of the same retry runs."""


def trial_seed(study_seed: int, trial_number: int) -> int:
    """A per-trial seed from (study seed, trial number): independent of worker and order."""
    return int(np.random.SeedSequence([study_seed, trial_number]).generate_state(1)[0])


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one study shares."""

    space: SearchSpace
    task: Task
    tracker: Tracker
    study_name: str
    experiment_id: str
    parent_run_id: str
    n_trials: int
    seed: int
    device: torch.device
    gallery: Gallery | None = None  # AE/VAE studies: a picture per trial
    dashboard_url: str | None = None  # where optuna-dashboard serves: each run links there


class Objective:
    """Optuna's objective: one trial, start to end."""

    def __init__(self, context: TrialContext, progress: StudyProgress) -> None:
        self.c = context
        self.progress = progress
        self.metric = context.space.settings.metric
        self.maximize = context.space.settings.direction == "maximize"
        self.epoch_rule = stage(context.space.stage).epoch_rule
        self.multi = context.space.settings.multi
        self.epochs_ran: dict[int, int] = {}  # trial number -> its last reported epoch

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        c, record = self.c, TrialRecord(trial)
        record.set_worker(worker_identity())  # first: lets a later start find a zombie
        if (earlier := duplicate_retry(trial)) is not None:  # enqueued twice by two processes
            record.set_failed(f"duplicate: trial {earlier} already retries trial {record.retry_of}")
            raise SurplusTrialError(f"trial {trial.number}: a duplicate retry")
        if surplus(trial, c.n_trials):
            trial.study.stop()
            record.set_failed("surplus: other workers took the last trials")
            raise SurplusTrialError(f"trial {trial.number}: n_trials already taken")
        flat = record.as_run(c.space.sample(trial))  # a retry after an out-of-memory: its batch
        config = c.space.config(flat)
        seed = trial_seed(c.seed, trial.number)
        record.set_seed(seed)
        run_id = c.tracker.start_run(
            c.experiment_id,
            f"trial-{trial.number:03d}",
            # The seed is a tag, not a param: MLflow's comparison would plot it as one.
            params={**flat, "data.train_size": len(c.task.splits.train_x)},
            tags={
                "optuna.study_name": c.study_name,
                "optuna.trial_number": trial.number,
                "vae_tune.stage": c.space.stage,
                "vae_tune.seed": seed,
                **self._dashboard_tags(trial),
                **record.warm_start_tags(),  # where a warm-started config came from
                **c.task.lineage,
            },
            parent_run_id=c.parent_run_id,
        )
        record.set_run_id(run_id)
        epoch_log = MetricBuffer(c.tracker, run_id)  # written every few s
        self.progress.trial_started(trial.number)
        held = _device_memory(c.device)  # the data's: what the trial must leave behind
        try:
            best, last, weights = self._train(trial, record, run_id, epoch_log, config, seed)
        except optuna.TrialPruned as exc:
            tags = {"pruned_at_epoch": record.pruned_at_epoch, "prune_reason": str(exc)}
            self._end(trial, run_id, epoch_log, "PRUNED", tags)
            raise
        except BaseException as exc:  # KeyboardInterrupt too: no run may stay RUNNING
            kind = infrastructure(exc)  # not the config's fault: it runs again
            reason = f"{type(exc).__name__}: {exc}" + (f" ({kind})" if kind else "")
            if contract.is_own(config.model.family) and not isinstance(exc, UserModelError):
                reason = f"{config.model.family} {dict(config.model.options)}: {reason}"
            oom = config.train.batch_size if kind == OUT_OF_MEMORY else None
            reason = record.set_failed(reason, interrupted=kind is not None, oom_batch=oom)
            status = "KILLED" if isinstance(exc, KeyboardInterrupt) else None
            self._end(trial, run_id, epoch_log, "FAIL", {"fail_reason": reason}, status=status)
            raise
        finally:
            _free_memory(c.device, held)  # the model is gone with _train's frame

        self._keep(run_id, weights)
        if self.multi:  # the trade-off where training ended: a Pareto point per trial
            metrics = c.space.settings.metrics
            values = [last.metrics[m] for m in metrics]
            record.set_best_epoch(last.epoch)
            shown = ", ".join(f"{m} {v:.5g}" for m, v in zip(metrics, values, strict=True))
            outcome = f"{shown} at epoch {last.epoch}"
            end_tags = {"best_epoch": last.epoch}
            self._end(trial, run_id, epoch_log, "COMPLETE", end_tags, outcome=outcome)
            return values
        record.set_best_epoch(best.epoch)
        value = best.metrics[self.metric]
        epoch_log.log({f"best_{self.metric}": value, "best_epoch": best.epoch}, step=best.epoch)
        outcome = f"{self.metric} {value:.5g} at epoch {best.epoch}"
        self._end(trial, run_id, epoch_log, "COMPLETE", {"best_epoch": best.epoch}, outcome=outcome)
        return value

    def _train(
        self,
        trial: optuna.Trial,
        record: TrialRecord,
        run_id: str,
        epoch_log: MetricBuffer,
        config: TrialConfig,
        seed: int,
    ) -> tuple[EpochResult, EpochResult, kept.State]:
        """Train the trial's model, reporting each epoch; its best and its last epoch, and the
        weights it is judged on (its best epoch's; a multi-objective trial's last). A pruned or
        finished model leaves its pictures; the model itself lives no longer than this."""
        c = self.c
        torch.manual_seed(seed)
        model = c.task.build(config).to(c.device)
        train, val = c.task.data(config)
        best: EpochResult | None = None
        last: EpochResult | None = None
        weights: kept.State = {}
        kl_per_dim: dict[int, list[float]] = {}  # a VAE's, per epoch
        probe = PROBE in c.space.settings.metrics

        def on_epoch_end(fitted: EpochResult) -> None:
            nonlocal best, last, weights
            extra, kl = c.task.epoch_metrics(model, probe)
            result = EpochResult(fitted.epoch, fitted.metrics | extra)
            if kl:
                kl_per_dim[result.epoch] = kl
            self.epochs_ran[trial.number] = result.epoch
            value = result.metrics[self.metric]
            # The study's metric first: MLflow's comparison plots a run's first metric.
            epoch_log.log({self.metric: value, **result.metrics}, result.epoch)
            if best is None or (value > best.metrics[self.metric]) == self.maximize:
                best = result
                if not self.multi:
                    weights = kept.snapshot(model)
            last = result
            if not self.multi:  # Optuna prunes no multi-objective trial: the curves are logged
                trial.report(value, result.epoch)
            update = EpochUpdate(
                trial.number,
                result.epoch,
                config.train.epochs,
                self.metric,
                value,
                best.metrics[self.metric],
                notes.study_best(trial.study),
            )
            self.progress.epoch(update, result.metrics["epoch_time_s"])
            reason = self._stop_reason(trial, result, value)
            if reason:
                record.set_pruned(result.epoch, reason)
                raise optuna.TrialPruned(reason)

        train_cfg = resolved(config.train, model, train)  # precision auto: as measured here
        record.set_precision(train_cfg.precision)
        try:
            fit(model, train, val, train_cfg, seed=seed, on_epoch_end=on_epoch_end)
        except optuna.TrialPruned:
            self._picture(trial, model, run_id)
            self._kl_plot(run_id, kl_per_dim)
            raise
        self._picture(trial, model, run_id)
        self._kl_plot(run_id, kl_per_dim)
        assert best is not None and last is not None  # fit ran at least one epoch
        return best, last, kept.snapshot(model) if self.multi else weights

    def _keep(self, run_id: str, weights: kept.State) -> None:
        """The complete trial's weights in its run, for a promotion without a retrain; one
        that cannot be kept costs the trial nothing (that promotion then says so)."""
        try:
            kept.keep(self.c.tracker, run_id, weights)
        except Exception as exc:  # a full disk, a store that refuses: said on the run
            self.c.tracker.set_tags(run_id, {"kept_model_error": f"{type(exc).__name__}: {exc}"})

    def _picture(self, trial: optuna.Trial, model: Model, run_id: str) -> None:
        """The trial's picture; a picture that cannot be made costs the trial nothing."""
        if self.c.gallery is None or not isinstance(model, Autoencoder):
            return
        try:
            with tempfile.TemporaryDirectory() as folder:
                self.c.gallery.trial(trial, model, run_id, Path(folder))
        except Exception as exc:  # a full disk, a store that refuses: said on the run
            self.c.tracker.set_tags(run_id, {"picture_error": f"{type(exc).__name__}: {exc}"})

    def _kl_plot(self, run_id: str, kl_per_dim: dict[int, list[float]]) -> None:
        """A VAE trial's KL per latent dimension: a bar plot of its last epoch, and every
        epoch's values as JSON."""
        if not kl_per_dim:
            return
        epoch = max(kl_per_dim)
        figure = plots.kl_per_dim_figure(
            kl_per_dim[epoch], f"KL per latent dimension, epoch {epoch}"
        )
        self.c.tracker.log_figure(run_id, figure, "kl_per_dim.png")
        self.c.tracker.log_text(run_id, json.dumps(kl_per_dim), "kl_per_dim.json")

    def _dashboard_tags(self, trial: optuna.Trial) -> dict[str, str]:
        """The trial's page in optuna-dashboard: a tag, and the run's description (Markdown,
        shown on the run's page in the MLflow UI)."""
        if self.c.dashboard_url is None:
            return {}
        url = links.dashboard_trial(self.c.dashboard_url, trial.study._study_id, trial.number)
        note = f"Trial {trial.number} of {self.c.study_name} in [optuna-dashboard]({url})"
        return {"vae_tune.dashboard_url": url, "mlflow.note.content": note}

    def _stop_reason(self, trial: optuna.Trial, result: EpochResult, value: float) -> str | None:
        """The stage's own rule first (a collapsed VAE), then the pruner's judgement."""
        if self.epoch_rule is not None:
            reason = self.epoch_rule(result.metrics, result.epoch, self.c.space.settings.collapse)
            if reason:
                return reason
        if not self.multi and trial.should_prune():
            return f"pruned at epoch {result.epoch}: {self.metric}={value:.5g}"
        return None

    def _end(
        self,
        trial: optuna.Trial,
        run_id: str,
        epoch_log: MetricBuffer,
        state: str,
        tags: dict[str, Any],
        status: str | None = None,
        outcome: str | None = None,
    ) -> None:
        """Close the trial's MLflow run and leave a note on the trial for optuna-dashboard."""
        c = self.c
        # RUN_STATUS makes a pruned trial's run KILLED, like an interrupted one: the tag says
        # which, in the runs table (the study's view shows it) and on the run's page.
        ran = self.epochs_ran.pop(trial.number, 0)
        shown = mlflow_view.trial_state_tag(state, ran, interrupted=status == "KILLED")
        end_tags = {"optuna.trial_state": state, **shown, **tags}
        c.tracker.end_run(run_id, status or RUN_STATUS[state], end_tags, epoch_log)
        outcome = outcome or ", ".join(f"{k}: {notes.short(v)}" for k, v in tags.items())
        link = c.tracker.run_link(c.experiment_id, run_id)
        seed = TrialRecord(trial).seed
        optuna_dashboard.save_note(
            trial, notes.trial_note(trial, state, outcome, run_id, link, seed)
        )


def _device_memory(device: torch.device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


def _free_memory(device: torch.device, held: int) -> None:
    """Models of earlier trials must not pile up on the GPU. A full collection costs 0.1-0.4 s
    with torch and MLflow loaded (benchmarks/fixed_costs.py): as much as a fast trial's epochs.
    So only when the trial left device memory behind (a cycle holds its model: a pruned
    trial's traceback); on a CPU, Python's own collections free such cycles."""
    if device.type == "cuda" and _device_memory(device) > held:
        gc.collect()
        torch.cuda.empty_cache()
