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

A second view, `vae-tune-topk`, shows the k best complete trials (`trial.top_k=true`, moved like
`trial.best`) side by side with their pictures. MLflow's runs table has no picture column, and
its chart mode, which has (an IMAGE chart of images logged by `log_image`), shows no column but
the run name: so the view opens in chart mode (`links.mlflow_topk`) on a DIFFERENCE chart, the
trials as columns and their tags and parameters as rows, and an IMAGE chart whose rows are the
picture's parts (`IMAGE_KEYS`). That chart prints metrics to 2 decimals (toFixed(2)), so each
top trial also carries its value as a tag, `Value <metric>` (capitalised: the chart sorts its
rows by name, and this one comes first, above the fold).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from vae_tune.record import StudyRecord, TrialRecord
from vae_tune.space.spaces import SearchSpace
from vae_tune.tracking import links
from vae_tune.tracking.tracker import PARENT_TAG, Tracker

VIEW_TAG = f"{links.VIEW_TAG_PREFIX}{links.TRIALS_VIEW}"
VIEW_NAME = "vae-tune: trials"
TOPK_VIEW_TAG = f"{links.VIEW_TAG_PREFIX}{links.TOPK_VIEW}"
TOP_TAG = "trial.top_k"  # on the runs of the study's links.TOP_K best complete trials
STATE_TAG = "trial.state"
EPOCHS_TAG = "trial.epochs"
BEST_TAG = "trial.best"  # `best_trial` on the study's own run is the best trial's number
NUMBER_TAG = "optuna.trial_number"  # set on every trial's run as it starts (objective.py)
METRIC_WIDTH, STATE_WIDTH, NARROW_WIDTH = 170, 150, 90  # pixels
TRIALS_FILTER = "attributes.run_name LIKE 'trial-%'"  # the trials, not the study's own run
# A trial picture's parts (pictures.trial_rows), each logged by `log_image` under its key: the
# IMAGE chart draws the trials side by side (a column each) only for two keys or more.
IMAGE_KEYS = ("validation images", "reconstructions", "prior samples")
# The chart's rows for the stages whose trials log pictures: the reconstructions first, on screen.
PICTURED = {
    "ae": ["reconstructions", "validation images"],
    "vae": ["reconstructions", "prior samples", "validation images"],
}
TOPK_SECTION = "vae-tune-topk"  # the uuid of the view's chart section and a prefix of its charts


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


def topk_view_state(space: SearchSpace) -> dict[str, Any]:
    """The top trials side by side: the trials view's columns (in table mode) for the runs marked
    `trial.top_k`, and in chart mode, where the link opens it, one section of two charts: their
    values (tags first: the value, number and state; then parameters, then metrics) and, for a
    pictured stage, their pictures."""
    charts: list[dict[str, Any]] = [
        _chart(
            "values",
            "DIFFERENCE",
            compareGroups=["Tags", "Parameters", "Model metrics"],
            chartName=f"the {links.TOP_K} best complete trials",
            showChangeFromBaseline=False,
            showDifferencesOnly=False,  # the state and every searched value, even when equal
            baselineColumnUuid="",
        )
    ]
    keys = PICTURED.get(space.stage)
    if keys:
        charts.insert(0, _chart("pictures", "IMAGE", imageKeys=keys, step=0))
        charts[0]["showRunParams"] = False  # every fixed parameter too: the values chart has them
    section = {"uuid": TOPK_SECTION, "name": f"top {links.TOP_K}", "display": True}
    # One chart a row, each high enough for a row of pictures and a few rows of values, so the
    # pictures and the values are both on a 1920x1000 screen.
    section |= {"isReordered": True, "deleted": False, "columns": 1, "cardHeight": 330}
    return view_state(space) | {
        "searchFilter": f"{column('tags', TOP_TAG)} = 'true'",
        "compareRunCharts": charts,
        "compareRunSections": [section],
        "isAccordionReordered": True,  # MLflow sorts its own sections after this one
        "runListHidden": True,  # chart mode lists run names only: the charts name the runs
    }


def _chart(name: str, kind: str, **config: Any) -> dict[str, Any]:
    return {
        "uuid": f"{TOPK_SECTION}-{name}",
        "type": kind,
        "metricSectionId": TOPK_SECTION,
        "isGenerated": False,
        "deleted": False,
        "runsCountToCompare": links.TOP_K,
    } | config


def envelope(state: dict[str, Any], name: str = VIEW_NAME, now_ms: int | None = None) -> str:
    """A tag's value: the saved-view envelope around a view state (uncompressed JSON, which
    the UI reads as well as its own deflate-compressed form)."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    text = json.dumps(state)
    return json.dumps({"name": name, "createdAt": now, "updatedAt": now, "state": text})


def save_view(tracker: Tracker, experiment_id: str, space: SearchSpace) -> None:
    """Write (or rewrite: a resumed study with a changed space) the study's views."""
    tracker.set_experiment_tag(experiment_id, VIEW_TAG, envelope(view_state(space)))
    topk = envelope(topk_view_state(space), f"vae-tune: top {links.TOP_K}")
    tracker.set_experiment_tag(experiment_id, TOPK_VIEW_TAG, topk)


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
    """Put `trial.best=true` on the study's best runs only, and `trial.top_k=true` (with the
    trial's value in full) on the runs of its links.TOP_K best complete trials only. After a
    trial ends (`ended`) it does so only if that trial is now among them; with no `ended` (the
    study closing) it always reconciles, so marks left by processes that finished at the same
    moment are put right."""
    try:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            return
        best_trials = study.best_trials if len(study.directions) > 1 else [study.best_trial]
        best = {r for t in best_trials if (r := TrialRecord(t).run_id)}
        maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        ranked = sorted(complete, key=lambda t: t.values[0], reverse=maximize)
        top = {r: t for t in ranked[: links.TOP_K] if (r := TrialRecord(t).run_id)}
        if ended is not None and TrialRecord(ended).run_id not in best | top.keys():
            return  # neither the best nor the top moved
        record = StudyRecord(study)
        _reconcile(tracker, record, BEST_TAG, {r: {} for r in best})
        _reconcile(
            tracker, record, TOP_TAG, {r: value_tags(record.metrics, t) for r, t in top.items()}
        )
    except Exception as exc:  # a mark is a nicety: the study goes on without it
        log(f"the best trials were not marked in MLflow: {type(exc).__name__}: {exc}")


def _reconcile(
    tracker: Tracker, record: StudyRecord, tag: str, wanted: dict[str, dict[str, str]]
) -> None:
    """`tag=true` on the `wanted` runs (with their other tags) and on no other of the study."""
    assert record.experiment_id and record.parent_run_id, "open_study records both"
    where = {PARENT_TAG: record.parent_run_id, tag: "true"}
    have = {run.info.run_id for run in tracker.runs(record.experiment_id, where)}
    for run_id in have - wanted.keys():
        tracker.delete_tag(run_id, tag)
    for run_id in wanted.keys() - have:
        tracker.set_tags(run_id, {tag: "true", **wanted[run_id]})


def value_tags(metrics: list[str], trial: FrozenTrial) -> dict[str, str]:
    """`Value <metric>`: the value as the study's summary prints it, for the top-k view's
    chart, which would print it to 2 decimals."""
    return {f"Value {m}": f"{v:.6g}" for m, v in zip(metrics, trial.values, strict=False)}
