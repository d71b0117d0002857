"""Promotion without a retrain (`promote --no-retrain`) on real Fashion-MNIST: every complete
trial keeps the weights it was judged on in its MLflow run; the promotion registers those
weights as they are, and averages a classifier's champion with the next-best trials only where
validation accuracy rises; a trial that kept nothing is refused before the test split is read."""

from __future__ import annotations

import io
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow
import pytest
import torch
from optuna.trial import TrialState

from tests.helpers import data_dir, invoke, load_study, mlflow_client, promotion_runs
from vae_tune.data.splits import load_splits
from vae_tune.record import StudyRecord, TrialRecord
from vae_tune.tracking.kept import KEPT_MODEL

pytestmark = pytest.mark.slow  # real studies on real data

SMALL = ["--train-size", "1000", "--val-size", "500"]
HEAD = "mlp-ae-fashion-mnist"


def run(root: Path, *args: str) -> str:
    result = invoke(root, *args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def head_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AE promoted without a retrain, and a head study of four full-length trials on it."""
    root = tmp_path_factory.mktemp("kept")
    run(root, "study", "ae", "--n-trials", "2", "--epochs", "1", *SMALL)
    run(root, "promote", "ae", "--no-retrain")
    head = ["--n-trials", "4", "--epochs", "3", "--pruner", "none", *SMALL]
    run(root, "study", "mlp", "--encoder", "ae", *head)
    return root


def test_every_complete_trial_keeps_its_weights_in_its_run(head_study: Path) -> None:
    """Read back by MLflow's own client and torch's weights-only loader: tensors, no pickle."""
    client = mlflow_client(head_study)
    for name in ("ae-fashion-mnist", HEAD):
        for trial in load_study(head_study, name).get_trials(states=(TrialState.COMPLETE,)):
            run_id = TrialRecord(trial).run_id
            assert run_id is not None
            with open(client.download_artifacts(run_id, KEPT_MODEL), "rb") as file:
                state = torch.load(io.BytesIO(file.read()), weights_only=True)
            assert state and all(isinstance(v, torch.Tensor) for v in state.values())


def test_the_registered_champion_is_the_trials_own_model_then_its_best_trials(
    head_study: Path,
) -> None:
    # One model, unmirrored: MLflow serves the champion trial's weights, so it scores the
    # validation split as the trial did (a retrain on train + validation would have seen it).
    output = run(head_study, "promote", "mlp", "--encoder", "ae", "--no-retrain", "--no-mirror")
    assert "retraining" not in output and "no retrain: trial" in output
    [run_] = promotion_runs(head_study, HEAD)
    assert run_.data.tags["promotion.retrained"] == "false"
    record = StudyRecord(load_study(head_study, HEAD))
    [(champion, promoted)] = record.promotions.items()
    assert (promoted.retrained, promoted.member_trials, promoted.members) == (False, [champion], 1)
    mlflow.set_tracking_uri(f"sqlite:///{head_study / 'mlflow.db'}")
    served = mlflow.pytorch.load_model("models:/vae-tune-fashion-mnist-mlp@champion")
    splits = load_splits("fashion-mnist", data_dir(), val_size=500, train_size=1000, seed=0)
    with torch.no_grad():
        accuracy = float((served(splits.val_x).argmax(1) == splits.val_y).float().mean())
    trial_value = record.live.trials[champion].value
    assert accuracy == pytest.approx(trial_value, abs=0.006)  # 3 images: bf16 against fp32

    # Three members: the champion first, each other trial taken only where the average's
    # validation accuracy rose, as the log shows.
    output = run(
        head_study, "promote", "mlp", "--encoder", "ae", "--no-retrain", "--members", "3", "--force"
    )
    record = StudyRecord(load_study(head_study, HEAD))
    promoted = record.promotions[champion]
    complete = {t.number for t in record.live.get_trials(states=(TrialState.COMPLETE,))}
    assert promoted.member_trials[0] == champion and set(promoted.member_trials) <= complete
    assert promoted.members == len(promoted.member_trials) == len(set(promoted.member_trials))
    decisions = re.findall(r"with trial (\d+)'s: ([\d.]+) -> ([\d.]+), (taken|left out)", output)
    assert decisions, output
    for number, before, after, verdict in decisions:
        assert (verdict == "taken") == (float(after) > float(before))
        assert (int(number) in promoted.member_trials) == (verdict == "taken")
    report = (head_study / "reports" / "fashion-mnist.md").read_text()
    assert "not retrained: trained on the training split alone" in report
    if promoted.members > 1:
        assert "their own models, their class probabilities averaged" in report


def test_a_trial_that_kept_no_model_is_refused_before_the_test_read(tmp_path: Path) -> None:
    run(tmp_path, "study", "ae", "--n-trials", "1", "--epochs", "1", *SMALL)
    [trial] = load_study(tmp_path, "ae-fashion-mnist").trials
    run_id = TrialRecord(trial).run_id
    assert run_id is not None
    # As a trial run before vae-tune 0.5 left it: no weights in its run.
    artifacts = Path(
        unquote(urlparse(mlflow_client(tmp_path).get_run(run_id).info.artifact_uri).path)
    )
    (artifacts / KEPT_MODEL).unlink()
    result = invoke(tmp_path, "promote", "ae", "--no-retrain")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "trial 0 of ae-fashion-mnist kept no model" in result.output
    assert "leave out --no-retrain" in result.output
    record = StudyRecord(load_study(tmp_path, "ae-fashion-mnist"))
    assert record.test_reads == [] and record.promotions == {}
    assert promotion_runs(tmp_path, "ae-fashion-mnist") == []
