"""Studies and trials as tables: what `vae-tune status`, `trials` and `export` show.

`trials_table` joins Optuna's trials with their MLflow runs (status and last metric values) on
the run id each trial stores, in one pandas DataFrame.
"""

from __future__ import annotations

from collections import Counter

import optuna
import pandas as pd
from optuna.trial import TrialState

from vae_tune.errors import VaeTuneError
from vae_tune.record import StudyRecord
from vae_tune.tracking.tracker import Tracker

STATES = {
    "complete": TrialState.COMPLETE,
    "pruned": TrialState.PRUNED,
    "fail": TrialState.FAIL,
    "running": TrialState.RUNNING,
}


def study_rows(storage: optuna.storages.BaseStorage) -> list[dict[str, object]]:
    """One row per study: stage, dataset, counts by state, best value."""
    rows = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        counts = Counter(t.state for t in trials)
        record = StudyRecord(study)
        settings = record.stored_settings
        best = [t for t in trials if t.state == TrialState.COMPLETE]
        rows.append(
            {
                "study": study.study_name,
                "stage": settings.get("stage", "?"),
                "dataset": settings.get("dataset", "?"),
                "metric": record.metric,
                **{name: counts[state] for name, state in STATES.items()},
                "best": study.best_value if best and len(study.directions) == 1 else None,
                "running_trials": [t.number for t in trials if t.state == TrialState.RUNNING],
                "stop_reason": record.stop_reason,
                # warm start, trial time-out, target: as the latest session ran
                "options": "; ".join(f"{k} {v}" for k, v in record.options.items()) or None,
            }
        )
    return rows


def trials_table(study: optuna.Study, tracker: Tracker | None = None) -> pd.DataFrame:
    """Every trial with params, state, value, epochs, reasons and its MLflow run joined in."""
    frame = study.trials_dataframe(
        attrs=("number", "state", "value", "duration", "params", "user_attrs")
    )
    # `value_val_loss` (a named objective) -> `value`, when there is one; `user_attrs_seed` ->
    # `seed`. A multi-objective study keeps `value_<metric>` for each.
    single = len(study.directions) == 1
    frame = frame.rename(
        columns=lambda c: (
            "value" if single and c.startswith("value") else c.removeprefix("user_attrs_")
        )
    )
    frame["duration_s"] = frame.pop("duration").dt.total_seconds()
    if tracker is None or "mlflow_run_id" not in frame:
        return frame
    experiment_id = tracker.find_experiment(study.study_name)
    if experiment_id is None:
        return frame
    runs = tracker.runs(experiment_id, {"optuna.study_name": study.study_name})
    runs = [r for r in runs if "optuna.trial_number" in r.data.tags]  # trial runs only
    mlflow = pd.DataFrame(
        [
            {"mlflow_run_id": r.info.run_id, "mlflow_status": r.info.status}
            | {f"mlflow.{k}": v for k, v in r.data.metrics.items()}
            for r in runs
        ]
    )
    if mlflow.empty:
        return frame
    return frame.merge(mlflow, on="mlflow_run_id", how="left")


def select(
    frame: pd.DataFrame, state: str | None, sort: str, descending: bool, limit: int | None
) -> pd.DataFrame:
    """Trials of one state (or all), sorted by a column, the first `limit` of them."""
    if state:
        frame = frame[frame["state"] == STATES[state].name]
    if sort not in frame:
        raise VaeTuneError(f"--sort {sort}: no such column; columns: {', '.join(frame.columns)}")
    frame = frame.sort_values(sort, ascending=not descending, na_position="last")
    return frame.head(limit) if limit else frame
