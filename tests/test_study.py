"""`vae-tune study ae` end to end on real Fashion-MNIST: Optuna storage and MLflow records."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from optuna.trial import TrialState

from tests.helpers import REPO, STUDY, invoke, load_study, mlflow_client, runs_of
from vae_tune.data.idx import FASHION_CLASSES as CLASSES
from vae_tune.data.splits import Splits
from vae_tune.evaluation.tasks import AutoencoderTask
from vae_tune.project.storage import open_storage
from vae_tune.space.spaces import load_space
from vae_tune.studies.lifecycle import StudyOptions, run_study
from vae_tune.studies.objective import trial_seed
from vae_tune.tracking.tracker import Tracker

pytestmark = pytest.mark.slow  # real studies on real data, subprocesses, servers

SMALL = ["--epochs", "4", "--train-size", "1000", "--val-size", "500"]


@pytest.fixture(scope="module")
def six_trials(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    result = invoke(root, "study", "ae", "--n-trials", "6", *SMALL)
    assert result.exit_code == 0, result.output
    return root, result.output


def test_six_trials_in_the_optuna_storage(six_trials) -> None:
    root, _ = six_trials
    study = load_study(root)
    trials = study.get_trials()
    assert len(trials) == 6
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    # The study keeps the exact space text it ran with, and its settings.
    assert study.user_attrs["search_space"] == (REPO / "search_spaces/ae.yaml").read_text()
    assert study.user_attrs["settings"]["train_size"] == 1000
    assert study.user_attrs["settings"]["fixed"]["train.epochs"] == 4
    for t in trials:
        assert t.user_attrs["seed"] == trial_seed(0, t.number)
        assert set(t.intermediate_values) <= {1, 2, 3, 4}
        if t.state == TrialState.COMPLETE:
            assert t.value == min(t.intermediate_values.values())


def test_six_child_runs_under_one_parent(six_trials) -> None:
    root, _ = six_trials
    client, parents, children = runs_of(root)
    assert len(parents) == 1 and len(children) == 6
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert "search_space.yaml" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    study = load_study(root)
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id

    by_number = {int(c.data.tags["optuna.trial_number"]): c for c in children}
    for trial in study.get_trials():
        run = by_number[trial.number]
        # Links both ways, the same dotted names for params, one metric point per epoch.
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        for name, value in trial.params.items():
            assert run.data.params[name] == str(value)
        assert run.data.params["train.epochs"] == "4"
        for metric in ("train_loss", "val_loss", "epoch_time_s"):
            history = client.get_metric_history(run.info.run_id, metric)
            assert sorted(m.step for m in history) == sorted(trial.intermediate_values)
        losses = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_loss")}
        assert losses == pytest.approx(trial.intermediate_values)
        expected = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}[trial.state.name]
        assert run.info.status == expected
        assert run.data.tags["optuna.trial_state"] == trial.state.name


def test_artifacts_live_beside_mlflow_db(six_trials) -> None:
    root, _ = six_trials
    assert (root / "mlartifacts" / STUDY).is_dir()
    assert not (root / "mlruns").exists()


def test_summary_names_counts_best_and_commands(six_trials) -> None:
    _, output = six_trials
    assert "best value" in output
    assert "optuna-dashboard studies/optuna.journal" in output
    assert "mlflow ui --backend-store-uri sqlite:///mlflow.db" in output


def test_rerun_with_more_trials_continues_the_study(tmp_path: Path) -> None:
    assert invoke(tmp_path, "study", "ae", "--n-trials", "2", *SMALL).exit_code == 0
    _, parents, _ = runs_of(tmp_path)
    result = invoke(tmp_path, "study", "ae", "--n-trials", "4", *SMALL)
    assert result.exit_code == 0, result.output
    assert "2 trials finished, running 2 more" in result.output
    assert [t.number for t in load_study(tmp_path).get_trials()] == [0, 1, 2, 3]
    _, parents_after, children = runs_of(tmp_path)
    assert [p.info.run_id for p in parents_after] == [p.info.run_id for p in parents]
    assert len(children) == 4
    # The same command again has nothing left to do.
    again = invoke(tmp_path, "study", "ae", "--n-trials", "4", *SMALL)
    assert "running 0 more" in again.output
    assert len(load_study(tmp_path).get_trials()) == 4


def test_pruned_trials_are_killed_runs_with_their_epoch(tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "search_spaces/ae.yaml").read_text())
    doc["study"]["pruner"] = {"name": "threshold", "upper": 0.0}  # any loss > 0: always prunes
    space = tmp_path / "always_prune.yaml"
    space.write_text(yaml.safe_dump(doc))
    result = invoke(tmp_path, "study", "ae", "--n-trials", "3", "--space", str(space), *SMALL)
    assert result.exit_code == 2  # nothing completed: said, not hidden
    assert "no trial completed" in result.output
    trials = load_study(tmp_path).get_trials()
    assert [t.state for t in trials] == [TrialState.PRUNED] * 3
    client, _, children = runs_of(tmp_path)
    assert len(children) == 3
    for run in children:
        assert run.info.status == "KILLED"
        assert run.data.tags["optuna.trial_state"] == "PRUNED"
        assert run.data.tags["pruned_at_epoch"] == "1"
        assert len(client.get_metric_history(run.info.run_id, "val_loss")) == 1


def test_changed_space_is_refused_unless_forced(tmp_path: Path) -> None:
    assert invoke(tmp_path, "study", "ae", "--n-trials", "1", *SMALL).exit_code == 0
    space = tmp_path / "changed.yaml"
    space.write_text((REPO / "search_spaces/ae.yaml").read_text().replace("high: 256", "high: 128"))
    refused = invoke(tmp_path, "study", "ae", "--n-trials", "2", "--space", str(space), *SMALL)
    assert refused.exit_code == 2
    assert "another search space" in refused.output
    assert len(load_study(tmp_path).get_trials()) == 1
    other_epochs = invoke(
        tmp_path,
        "study",
        "ae",
        "--n-trials",
        "2",
        "--epochs",
        "2",
        "--train-size",
        "1000",
        "--val-size",
        "500",
    )
    assert other_epochs.exit_code == 2 and "other settings" in other_epochs.output
    forced = invoke(
        tmp_path, "study", "ae", "--n-trials", "2", "--space", str(space), "--force", *SMALL
    )
    assert forced.exit_code == 0, forced.output
    assert load_study(tmp_path).user_attrs["search_space"] == space.read_text()


def test_nan_loss_fails_the_trial_and_the_study_goes_on(tmp_path: Path) -> None:
    images = torch.rand(64, 1, 28, 28)
    images[0, 0, 0, 0] = float("nan")
    labels = torch.zeros(64, dtype=torch.long)
    splits = Splits("fashion-mnist", images, labels, images[:16].nan_to_num(), labels[:16], CLASSES)
    space = load_space(REPO / "search_spaces/ae.yaml").with_fixed({"train.epochs": 2})
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlartifacts")
    storage = open_storage(str(tmp_path / "studies/optuna.journal"), write=True)
    task = AutoencoderTask("ae", splits)
    summary = run_study(space, task, storage, tracker, StudyOptions("nan", n_trials=2), log=str)
    assert summary.counts["FAIL"] == 2 and summary.best_value is None
    client = mlflow_client(tmp_path)
    runs = client.search_runs(
        [summary.experiment_id], filter_string="tags.`mlflow.parentRunId` != ''"
    )
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED"]
    for run in runs:
        assert run.data.tags["optuna.trial_state"] == "FAIL"
        assert "non-finite train loss at epoch 1" in run.data.tags["fail_reason"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["study", "gan"], "'gan' is not one of"),
        (["study", "ae", "--storage", "nosuchdb://x/y"], "cannot open Optuna storage"),
        (
            ["study", "ae", "--tracking-uri", "nosuchscheme://x"],
            "cannot open MLflow tracking store",
        ),
        (["study", "ae", "--data-dir", "/nonexistent/data", "--dataset", "mnist"], "not found"),
        (["study", "ae", "--space", "/nonexistent.yaml"], "cannot read"),
        (["study", "ae", "--pruner", "hyperbandd"], "unknown pruner"),
        (["study", "ae", "--device", "cuda:7"], "--device"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path: Path, args: list[str], message: str) -> None:
    result = invoke(tmp_path, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
