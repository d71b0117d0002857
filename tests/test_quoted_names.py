"""Study names with quotes: MLflow's filter grammar has no escapes, so `Tracker.runs` quotes a
value with the quote it does not hold and matches the rest itself; `trials` and `export` work
on a study called o'brien."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import invoke
from vae_tune.tracking.tracker import Tracker

NAMES = ["o'brien", 'say "hi"', "both ' and \"", "back\\slash", "end\\", "plain"]


def test_runs_are_found_by_tag_values_with_any_quote(tmp_path: Path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_root=tmp_path / "art")
    experiment = tracker.experiment_id("quotes")
    ids = {name: tracker.start_run(experiment, "r", tags={"study": name}) for name in NAMES}
    for name in NAMES:
        assert [r.info.run_id for r in tracker.runs(experiment, {"study": name})] == [ids[name]]
    both = {"study": "o'brien", "other": 'say "hi"'}
    run_id = tracker.start_run(experiment, "r", tags=both)
    assert [r.info.run_id for r in tracker.runs(experiment, both)] == [run_id]


@pytest.mark.slow
def test_trials_and_export_of_a_study_named_with_an_apostrophe(tmp_path: Path) -> None:
    name = "o'brien"
    tiny = ["--n-trials", "1", "--epochs", "1", "--train-size", "200", "--val-size", "100"]
    result = invoke(tmp_path, "study", "ae", "--study-name", name, *tiny)
    assert result.exit_code == 0, result.output
    result = invoke(tmp_path, "trials", "ae", "--study-name", name)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    out = tmp_path / "trials.csv"
    result = invoke(tmp_path, "export", "ae", "--study-name", name, "--out", str(out))
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert len(frame) == 1
    # The trial is joined with its MLflow run: the filter on the study's name found it.
    assert frame["mlflow_status"].tolist() == ["FINISHED"], frame.T
