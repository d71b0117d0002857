"""What optuna-dashboard and the log say of a study and its trials, in Markdown and one line.

A study's note holds its settings, its MLflow run and its search space; a trial's note its
outcome, params and links to its MLflow run. Links are absolute (the MLflow UI's address) so
they work from the dashboard's own server.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from vae_tune.record import Settings, TrialRecord
from vae_tune.space.spaces import SearchSpace
from vae_tune.tracking import links


def study_note(
    space: SearchSpace,
    settings: Settings,
    parent_link: str,
    parent_run_id: str,
    mlflow_url: str | None = None,
    experiment_id: str | None = None,
) -> str:
    """The study's note: its settings, its MLflow run and trials, its search space."""
    trials = ""
    if experiment_id is not None:  # the saved view of the trials, as `links` makes it
        url = links.mlflow_trials(mlflow_url or "", experiment_id).lstrip("/")
        trials = f"Trials in MLflow: [the {space.stage} trials, best first]({url})\n\n"
    shown = {k: v for k, v in settings.to_json().items() if k != "fixed"}
    lines = "\n".join(f"- {k}: `{v}`" for k, v in shown.items())
    s = space.settings
    return (
        f"**{space.stage} study**, objectives `{', '.join(s.metrics)}` "
        f"({', '.join(s.directions)}), sampler "
        f"`{dict(s.sampler)}`, pruner `{dict(s.pruner)}`\n\n{lines}\n\n"
        f"MLflow parent run [{parent_run_id}]({parent_link})\n\n{trials}"
        f"Search space ({space.source}):\n\n```yaml\n{space.text}\n```"
    )


def with_options(note: str, shown: dict[str, str]) -> str:
    """The study's note with the warm start, trial time-out and target it runs with."""
    if not shown:
        return note
    lines = "\n".join(f"- {key.replace('_', ' ')}: `{value}`" for key, value in shown.items())
    return f"{lines}\n\n{note}"


def stopped_note(note: str, reason: str) -> str:
    return f"**Stopped early**: {reason}\n\n{note}"


def trial_note(
    trial: optuna.Trial, state: str, outcome: str, run_id: str, run_link: str, seed: int
) -> str:
    """A trial's note: its outcome, params, seed and MLflow run."""
    rows = [f"| `{k}` | {short(v)} |" for k, v in trial.params.items()]
    return "\n".join(
        [
            f"**{state}** ({outcome})",
            "",
            "| param | value |",
            "|---|---|",
            *rows,
            "",
            f"MLflow run [{run_id}]({run_link}), seed {seed}",
        ]
    )


def trial_line(trial: FrozenTrial, metric: str) -> str:
    """One line for the log when a trial ends."""
    record = TrialRecord(trial)
    if trial.state == TrialState.COMPLETE:
        params = " ".join(f"{k}={short(v)}" for k, v in trial.params.items())
        values = " ".join(f"{v:.5g}" for v in trial.values)
        return f"trial {trial.number} COMPLETE {metric} {values}  {params}"
    if trial.state == TrialState.PRUNED:
        return f"trial {trial.number} PRUNED: {record.prune_reason}"
    return f"trial {trial.number} {trial.state.name}: {record.fail_reason}"


def study_best(study: optuna.Study) -> str:
    if len(study.directions) > 1:
        return f"{len(study.best_trials)} on the Pareto front"
    try:
        return f"{study.best_value:.5g}"
    except ValueError:  # no complete trial yet
        return "-"


def short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
