"""`vae-tune status`, `trials` and `export` on a real small study."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.helpers import TINY, invoke, load_study, runs_of
from vae_tune.analysis import tables
from vae_tune.project.folder import Project
from vae_tune.usecases import runner
from vae_tune.usecases.runner import StudyRef

pytestmark = pytest.mark.slow  # real studies on real data, subprocesses, servers


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("views")
    # No pruning: three complete trials, whatever configurations the sampler draws.
    result = invoke(root, "study", "ae", "--n-trials", "3", "--pruner", "none", *TINY)
    assert result.exit_code == 0, result.output
    return root


def test_status_lists_the_study_with_counts_and_best(project) -> None:
    study = load_study(project)
    [row] = runner.status(Project(project))
    complete = sum(t.state.name == "COMPLETE" for t in study.trials)
    assert (row["study"], row["stage"], row["dataset"], row["metric"]) == (
        "ae-fashion-mnist",
        "ae",
        "fashion-mnist",
        "val_loss",
    )
    assert row["complete"] == complete and row["best"] == study.best_value
    result = invoke(project, "status")  # and the command shows those facts
    assert result.exit_code == 0, result.output
    assert "ae-fashion-mnist" in result.output and f"{study.best_value:.5g}" in result.output


def test_trials_filters_by_state_and_sorts_best_first(project) -> None:
    study = load_study(project)
    _, frame = runner.trials_table(StudyRef("ae"), Project(project))
    chosen = tables.select(frame, "complete", "value", descending=False, limit=2)
    best = study.best_trial
    assert chosen["number"].iloc[0] == best.number and len(chosen) == 2
    assert set(chosen["state"]) == {"COMPLETE"}
    result = invoke(project, "trials", "ae", "--state", "complete", "--limit", "2")
    assert result.exit_code == 0, result.output
    assert f"ae-fashion-mnist: 2 of {len(study.trials)} trials" in result.output
    assert str(best.user_attrs["mlflow_run_id"])[:8] in result.output
    bad = invoke(project, "trials", "ae", "--sort", "nonsense")
    assert bad.exit_code == 2 and "no such column" in bad.output


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_joins_trials_with_their_mlflow_runs(project, fmt: str) -> None:
    result = invoke(project, "export", "ae", "--format", fmt)
    assert result.exit_code == 0, result.output
    path = project / f"ae-fashion-mnist.{fmt}"
    frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    study = load_study(project)
    assert sorted(frame["number"]) == [t.number for t in study.trials]
    _, _, children = runs_of(project)
    by_run = {r.info.run_id: r for r in children}
    for _, row in frame.iterrows():
        run = by_run[row["mlflow_run_id"]]
        assert row["mlflow_status"] == run.info.status
        assert row["mlflow.val_loss"] == pytest.approx(run.data.metrics["val_loss"])
        assert row["value"] == pytest.approx(study.trials[row["number"]].value)
