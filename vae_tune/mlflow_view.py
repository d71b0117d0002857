"""The study's saved view in the MLflow UI, and the tags it shows: this module owns its format.

MLflow's runs table shows only the columns a user picked, per experiment and per browser, so a
study's trials first appear with no metric and no parameter on screen. MLflow's own saved views
(3.15+) keep the columns, their order and the sort with the experiment: an experiment tag
`mlflow.sharedViewState.<key>` whose value is an envelope `{"name", "createdAt", "updatedAt",
"state"}`, `state` being the view state as JSON text (search facets such as `orderByKey` and
`searchFilter`, UI state such as `selectedColumns`), opened by the URL parameter
`viewStateShareKey=<key>` (see `links.mlflow_trials`). Column keys are `metrics.`name``,
`params.`name`` and `tags.`name``. None of this is a public API: read from MLflow 3.17.2's UI
code (useSharedExperimentViewState, savedViewEnvelope, ExperimentPageUIState) and pinned by
tests/test_ui.py in a real browser. Being experiment tags, the view lives in the store: it
survives a server restart and reads the same on every machine that opens that store.

The tags it shows: `trial.state` (COMPLETE, `PRUNED at epoch N`, FAIL) and `trial.epochs` on
every trial's run, since a pruned trial's run is KILLED and shows the same red cross as a failed
one; `trial.best=true` on the study's best run (each run of a Pareto front), moved as it changes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from vae_tune import links
from vae_tune.record import StudyRecord, TrialRecord
from vae_tune.space import SearchSpace
from vae_tune.tracking import PARENT_TAG, Tracker

VIEW_TAG = f"{links.VIEW_TAG_PREFIX}{links.TRIALS_VIEW}"
VIEW_NAME = "vae-tune: trials"
STATE_TAG = "trial.state"
EPOCHS_TAG = "trial.epochs"
BEST_TAG = "trial.best"  # `best_trial` on the study's own run is the best trial's number
NUMBER_TAG = "optuna.trial_number"  # set on every trial's run as it starts (objective.py)
METRIC_WIDTH, STATE_WIDTH, NARROW_WIDTH = 170, 150, 90  # pixels
TRIALS_FILTER = "attributes.run_name LIKE 'trial-%'"  # the trials, not the study's own run


def column(kind: str, key: str) -> str:
    """A runs-table column as MLflow's UI names it: `metrics.`val_loss``."""
    return f"{kind}.`{key}`"


def view_state(space: SearchSpace) -> dict[str, Any]:
    """The view of a study's trials: its metrics (sorted best first by the first), the trial's
    state, every searched parameter, then its epochs, best mark and number."""
    s = space.settings
    metrics = [column("metrics", m) for m in s.metrics]
    tags = [column("tags", t) for t in (STATE_TAG, EPOCHS_TAG, BEST_TAG, NUMBER_TAG)]
    params = [column("params", p.name) for p in space.params]
    # The metric, the state, the parameters: what a comparison reads first, on screen even
    # with MLflow's Assistant panel open; the rest of the tags after them.
    columns = [*metrics, tags[0], *params, *tags[1:]]
    # Wide enough for a value in full (MLflow shows 17 digits and cuts the rest), narrow
    # enough that the searched parameters beside them are on screen at 1920 px.
    widths = dict.fromkeys(metrics, METRIC_WIDTH) | dict.fromkeys(tags[1:], NARROW_WIDTH)
    widths[tags[0]] = STATE_WIDTH
    return {
        "searchFilter": TRIALS_FILTER,
        "orderByKey": column("metrics", s.metric),
        "orderByAsc": s.direction == "minimize",
        "selectedColumns": columns,
        "columnOrder": columns,
        "columnWidths": widths,
    }


def envelope(space: SearchSpace, now_ms: int | None = None) -> str:
    """The tag's value: the saved-view envelope around the view state (uncompressed JSON, which
    the UI reads as well as its own deflate-compressed form)."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    state = json.dumps(view_state(space))
    return json.dumps({"name": VIEW_NAME, "createdAt": now, "updatedAt": now, "state": state})


def save_view(tracker: Tracker, experiment_id: str, space: SearchSpace) -> None:
    """Write (or rewrite: a resumed study with a changed space) the study's view."""
    tracker.set_experiment_tag(experiment_id, VIEW_TAG, envelope(space))


def trial_state_tag(state: str, epochs: int, interrupted: bool = False) -> dict[str, Any]:
    """The tags that tell a trial's Optuna state in the runs table and on the run's page."""
    shown = f"PRUNED at epoch {epochs}" if state == "PRUNED" else state
    if interrupted:
        shown += " (interrupted)"
    return {STATE_TAG: shown, EPOCHS_TAG: epochs}


def mark_best(
    tracker: Tracker,
    study: optuna.Study,
    ended: FrozenTrial | None = None,
    log: Callable[[str], None] = print,
) -> None:
    """Put `trial.best=true` on the study's best runs only. After a trial ends (`ended`) it does
    so only if that trial is now among the best; with no `ended` (the study closing) it always
    reconciles, so marks left by processes that finished at the same moment are put right."""
    try:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            return
        best_trials = study.best_trials if len(study.directions) > 1 else [study.best_trial]
        best = {r for t in best_trials if (r := TrialRecord(t).run_id)}
        if ended is not None and TrialRecord(ended).run_id not in best:
            return  # the best did not move
        record = StudyRecord(study)
        assert record.experiment_id and record.parent_run_id, "open_study records both"
        where = {PARENT_TAG: record.parent_run_id, BEST_TAG: "true"}
        marked = tracker.runs(record.experiment_id, where)
        have = {run.info.run_id for run in marked}
        for run_id in have - best:
            tracker.delete_tag(run_id, BEST_TAG)
        for run_id in best - have:
            tracker.set_tags(run_id, {BEST_TAG: "true"})
    except Exception as exc:  # a mark is a nicety: the study goes on without it
        log(f"the best trial was not marked in MLflow: {type(exc).__name__}: {exc}")
