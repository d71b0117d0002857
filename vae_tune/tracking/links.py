"""The URLs that land on what a user wants to see, in optuna-dashboard and the MLflow UI.

MLflow 3's UI opens experiments in its GenAI view unless told `workflowType=machine_learning`,
and nests child runs under a collapsed parent row unless the table is sorted by something other
than the start time: the runs URL asks for both, sorted by the study's metric, best first. The
compare page takes its runs as JSON arrays, `runs` first. optuna-dashboard names studies by the
storage's study id. Checked in Chromium against MLflow 3.17 and optuna-dashboard 0.21.

A study's trials open in its saved view (`mlflow_view.py` writes it): the URL names the view by
`viewStateShareKey` and nothing else of the table, since MLflow ignores a saved view whose URL
also carries a sort or a filter.
"""

from __future__ import annotations

import json
import urllib.parse

ML_VIEW = "workflowType=machine_learning"
TRIALS_VIEW = "vae-tune-trials"  # the study's saved view in the MLflow UI, by its share key
TOPK_VIEW = "vae-tune-topk"  # its best trials side by side, with their pictures
TOP_K = 5  # trials the top-k view shows
VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # MLflow's experiment tags that hold saved views


def mlflow_trials(base: str, experiment_id: str) -> str:
    """The study's trials in its saved view: metric, state and searched params as columns."""
    return f"{base}/#/experiments/{experiment_id}/runs?{ML_VIEW}&viewStateShareKey={TRIALS_VIEW}"


def mlflow_topk(base: str, experiment_id: str) -> str:
    """The study's TOP_K best trials side by side in its top-k view, opened in chart mode
    (`compareRunsMode` is no search facet, so MLflow still applies the view): their values
    and their pictures."""
    view = f"viewStateShareKey={TOPK_VIEW}&compareRunsMode=CHART"
    return f"{base}/#/experiments/{experiment_id}/runs?{ML_VIEW}&{view}"


def mlflow_runs(base: str, experiment_id: str, metric: str, direction: str) -> str:
    """The experiment's runs table, trials as rows, best first: for a study run before the
    saved view existed."""
    order = urllib.parse.quote(f"metrics.`{metric}`")
    ascending = "true" if direction == "minimize" else "false"
    return (
        f"{base}/#/experiments/{experiment_id}/runs?{ML_VIEW}"
        f"&orderByKey={order}&orderByAsc={ascending}"
    )


def mlflow_run(base: str, experiment_id: str, run_id: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{ML_VIEW}"


def mlflow_compare(base: str, experiment_id: str, run_ids: list[str]) -> str:
    """MLflow's comparison of these runs: parallel coordinates, params and metrics."""
    runs, experiments = _json_param(run_ids), _json_param([experiment_id])
    return f"{base}/#/compare-runs?runs={runs}&experiments={experiments}&{ML_VIEW}"


def _json_param(values: list[str]) -> str:
    """A JSON array, percent-encoded: no spaces or quotes to cut a URL short in a terminal."""
    return urllib.parse.quote(json.dumps(values, separators=(",", ":")), safe="")


def dashboard_study(base: str, study_id: int) -> str:
    return f"{base}/dashboard/studies/{study_id}"


def dashboard_trial(base: str, study_id: int, number: int) -> str:
    return f"{base}/dashboard/studies/{study_id}/trials?numbers={number}"


def dashboard_home(base: str) -> str:
    return f"{base}/dashboard"
