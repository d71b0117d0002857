"""`--warm-start`: the best configurations of earlier studies, enqueued as this study's first.

Each source's best complete trials (`TOP`; a multi-objective source's Pareto front) are fitted
to this study's space: a number outside a range is clipped into it, a choice this space does
not offer skips the configuration, a parameter the source did not search is left to the
sampler, one this space does not search is dropped; the log says which, per configuration.
They are enqueued (`enqueue_trial`) and so become ordinary trials of this study, counted in its
budget; the source trials themselves never do (no `add_trials`). Each records its source on the
trial (`TrialRecord.warm_start`) and, through the objective, on its MLflow run. A source is
enqueued once per study (`StudyRecord.warm_started`): resuming does not run them again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from vae_tune.errors import VaeTuneError
from vae_tune.project.storage import open_storage
from vae_tune.record import StudyRecord, TrialRecord
from vae_tune.space.extras import Source
from vae_tune.space.spaces import Param, SearchSpace

TOP = 3  # configurations per source: its best few, not its whole history
Log = Callable[[str], None]


def warm_start(
    study: optuna.Study, space: SearchSpace, sources: tuple[Source, ...], n_trials: int, log: Log
) -> list[int]:
    """Enqueue the sources' best configurations that fit, no more than the budget has room
    for (a configuration beyond it would wait in the study for a later session); the source
    trials enqueued."""
    record = StudyRecord(study)
    done = record.warm_started
    enqueued_all: list[int] = []
    held = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    room = n_trials - len(study.get_trials(deepcopy=False, states=held))
    for source in sources:
        if str(source) in done:
            log(f"warm start: {source} was enqueued when the study began; not again")
            continue
        assert source.location is not None, "sources are located before the study opens"
        enqueued: list[int] = []
        for trial in best_trials(_load(source), TOP):
            params, said = fit_to_space(space.params, trial.params)
            what = f"warm start: {source} trial {trial.number} ({_values(trial)})"
            if len(enqueued_all) + len(enqueued) >= room:
                log(f"{what} not enqueued: the study has no room left in its {n_trials} trials")
                continue
            if params is None:
                log(f"{what} skipped: {'; '.join(said)}")
                continue
            attrs = TrialRecord.warm_start_attrs(source.name, str(source.location), trial.number)
            study.enqueue_trial(params, user_attrs=attrs)
            enqueued.append(trial.number)
            log(f"{what} enqueued" + (f": {'; '.join(said)}" if said else " as it ran"))
        if not enqueued:
            log(f"warm start: nothing of {source} fits; the study starts cold from it")
        record.record_warm_start(str(source), enqueued)
        enqueued_all += enqueued
    return enqueued_all


def best_trials(study: optuna.Study, top: int) -> list[FrozenTrial]:
    """A study's best complete trials, best first, one per configuration."""
    if len(study.directions) > 1:
        ranked = sorted(study.best_trials, key=lambda t: t.number)
    else:
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        ranked = sorted(complete, key=lambda t: t.value or 0.0, reverse=maximize)
    chosen: list[FrozenTrial] = []
    for trial in ranked:
        if all(trial.params != c.params for c in chosen):
            chosen.append(trial)
    return chosen[:top]


def fit_to_space(
    params: tuple[Param, ...], given: dict[str, Any]
) -> tuple[dict[str, Any] | None, list[str]]:
    """A source configuration inside this space (None: it cannot be), and what was done."""
    fitted: dict[str, Any] = {}
    said = []
    for param in params:
        if param.name not in given:
            said.append(f"{param.name} left to the sampler (not searched there)")
            continue
        value = given[param.name]
        if param.type == "categorical":
            if value not in param.choices:
                return None, [f"{param.name}={value!r} is not one of {list(param.choices)}"]
            fitted[param.name] = value
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, [f"{param.name}={value!r} is not a number"]
        inside = _clip(param, value)
        if inside != value:
            said.append(f"{param.name} {value:.4g} clipped to {inside:.4g}")
        fitted[param.name] = inside
    dropped = sorted(set(given) - {p.name for p in params})
    if dropped:
        said.append(f"dropped {', '.join(dropped)} (not searched here)")
    return fitted, said


def _clip(param: Param, value: float) -> float | int:
    """Into [low, high], on the step's grid where there is one."""
    low, high = param.low, param.high
    assert low is not None and high is not None
    inside = min(max(value, low), high)
    if param.step:
        steps = round((inside - low) / param.step)
        inside = low + steps * param.step
        if inside > high:
            inside -= param.step
    return round(inside) if param.type == "int" else float(inside)


def _load(source: Source) -> optuna.Study:
    assert source.location is not None
    try:
        return optuna.load_study(study_name=source.name, storage=open_storage(source.location))
    except KeyError:
        where = "this project's storage" if source.here else source.location
        raise VaeTuneError(
            f"warm start from {source}: no study {source.name!r} in {where}"
        ) from None


def _values(trial: FrozenTrial) -> str:
    return ", ".join(f"{v:.5g}" for v in trial.values or [])


def latest_other(storage: optuna.storages.BaseStorage, stage: str, study_name: str) -> str | None:
    """The study of `stage` created last in `storage`, other than `study_name`: what
    `pipeline --warm-start` starts each stage from. "Last" by the storage's own study ids,
    which it hands out in order of creation (no clock is compared)."""
    candidates = [
        summary
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)
        if summary.study_name != study_name
        and StudyRecord(summary).stored_settings.get("stage") == stage
        and summary.n_trials > 0
    ]
    latest = max(candidates, key=lambda summary: summary._study_id, default=None)
    return latest.study_name if latest is not None else None
