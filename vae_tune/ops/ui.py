"""`vae-tune ui`: both UIs on this project's stores, and the URLs that land on its trials.

The URLs come from the servers themselves once they answer (optuna-dashboard's study list and
the MLflow experiments its studies log to), so the launcher reads no store and stays small. It
stops both servers on Ctrl-C, on SIGTERM and on a hang-up (the terminal closing); a SIGKILL of
it takes them along by themselves (see `servers.py`).
"""

from __future__ import annotations

import signal
import time
import urllib.parse
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vae_tune.errors import VaeTuneError
from vae_tune.ops import servers
from vae_tune.tracking import links

if TYPE_CHECKING:
    from vae_tune.project.folder import Project

Log = Callable[[str], None]
TOP_K = links.TOP_K  # trials the top-k link puts side by side


@dataclass(frozen=True)
class StudyLinks:
    name: str
    dashboard: str
    runs: str | None  # the MLflow runs table, trials as rows
    compare: str | None  # the top trials side by side in MLflow, with their pictures


def serve(project: Project, open_browser: bool, log: Log) -> None:
    """Serve until Ctrl-C, SIGTERM or a hang-up."""
    if not project.has_storage:
        where = project.storage_location
        raise VaeTuneError(f"no study storage at {where}: run `vae-tune study` first")
    if not project.has_tracking_store:
        raise VaeTuneError(f"no MLflow store at {project.tracking}: run `vae-tune study` first")
    host = project.host
    servers.check_port(host, project.dashboard_port, "--port")
    servers.check_port(host, project.mlflow_port, "--mlflow-port")
    project.artifacts.mkdir(parents=True, exist_ok=True)
    both = [
        servers.dashboard_server(
            project.storage_location, project.artifacts, host, project.dashboard_port, project.logs
        ),
        servers.mlflow_server(
            project.tracking, project.artifact_root, host, project.mlflow_port, project.logs
        ),
    ]
    # A hang-up or a kill takes the Ctrl-C path: both servers are stopped, in order.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    log("starting optuna-dashboard and the MLflow UI ...")
    try:
        servers.start(both)
        found = study_links(project)
        show(project, found, log)
        if open_browser:
            first = found[0] if len(found) == 1 else None
            webbrowser.open(
                first.dashboard if first else links.dashboard_home(project.dashboard_url)
            )
            if first and first.runs:
                webbrowser.open(first.runs)
        log("Ctrl-C stops both.")
        while servers.running(both):
            time.sleep(0.3)
        dead = next(s for s in both if s.process is None or s.process.poll() is not None)
        raise VaeTuneError(f"{dead.name} stopped; its log: {dead.log}")
    except KeyboardInterrupt:
        log("stopping both servers")
    finally:
        servers.stop(both)


def study_links(project: Project) -> list[StudyLinks]:
    """Each study's pages, asked of the running servers."""
    found = []
    for summary in servers.get_json(f"{project.dashboard_url}/api/studies")["study_summaries"]:
        attrs = {a["key"]: a["value"] for a in summary.get("user_attrs", [])}
        study_id, name = summary["study_id"], summary["study_name"]
        dashboard = links.dashboard_study(project.dashboard_url, study_id)
        experiment = _experiment(project, name)
        if experiment is None or "metric" not in attrs:
            found.append(StudyLinks(name, dashboard, None, None))
            continue
        experiment_id = str(experiment["experiment_id"])
        direction = summary["directions"][0].lower()
        tags = {t["key"] for t in experiment.get("tags", [])}
        if links.VIEW_TAG_PREFIX + links.TRIALS_VIEW in tags:
            runs = links.mlflow_trials(project.mlflow_url, experiment_id)
        else:  # a study from before the saved view: MLflow would refuse an unknown view
            runs = links.mlflow_runs(project.mlflow_url, experiment_id, attrs["metric"], direction)
        top = _top_runs(project, study_id, direction)
        compare = None
        if links.VIEW_TAG_PREFIX + links.TOPK_VIEW in tags and top:
            compare = links.mlflow_topk(project.mlflow_url, experiment_id)
        elif top:  # a study from before the top-k view: MLflow's compare page, no pictures
            compare = links.mlflow_compare(project.mlflow_url, experiment_id, top)
        found.append(StudyLinks(name, dashboard, runs, compare))
    return found


def show(project: Project, found: list[StudyLinks], log: Log) -> None:
    log(f"optuna-dashboard: {links.dashboard_home(project.dashboard_url)}")
    log(f"MLflow UI:        {project.mlflow_url}")
    for study in found:
        log(f"{study.name}:")
        log(f"  trials in optuna-dashboard:  {study.dashboard}")
        if study.runs:
            log(f"  trials in MLflow:            {study.runs}")
        if study.compare:
            log(f"  top {TOP_K} side by side in MLflow: {study.compare}")


def _experiment(project: Project, name: str) -> dict[str, Any] | None:
    """The study's MLflow experiment, with its tags, as the server gives it."""
    query = urllib.parse.urlencode({"experiment_name": name})
    url = f"{project.mlflow_url}/api/2.0/mlflow/experiments/get-by-name?{query}"
    try:
        experiment: dict[str, Any] = servers.get_json(url)["experiment"]
    except OSError:  # 404: the study has no experiment in this tracking store
        return None
    return experiment


def _top_runs(project: Project, study_id: int, direction: str) -> list[str]:
    """The MLflow runs of the study's best complete trials."""
    study = servers.get_json(f"{project.dashboard_url}/api/studies/{study_id}?after=0")
    complete: list[tuple[float, str]] = []
    for trial in study["trials"]:
        attrs: dict[str, Any] = {a["key"]: a["value"] for a in trial["user_attrs"]}
        if trial["state"] == "Complete" and trial["values"] and "mlflow_run_id" in attrs:
            complete.append((float(trial["values"][0]), str(attrs["mlflow_run_id"])))
    complete.sort(reverse=direction == "maximize")
    return [run_id for _, run_id in complete[:TOP_K]]
