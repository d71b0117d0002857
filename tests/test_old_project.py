"""A project written by vae-tune 0.4 before its modules moved into packages still works: its
studies resume, its promotions are reused, and its registered champions load in vae-tune and
in MLflow alone. The fixture was made once (`tests/fixtures/make_project_0_4.py`) and is never
regenerated."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import mlflow.pytorch
import pytest
import torch

from tests.fixtures.make_project_0_4 import HERE, WRITTEN_AT
from tests.helpers import invoke, load_study
from vae_tune.data.splits import load_splits
from vae_tune.record import StudyRecord
from vae_tune.tracking.tracker import Tracker

pytestmark = pytest.mark.slow  # real studies on real data

SMALL = ["--train-size", "300", "--val-size", "100", "--seed", "0"]


@pytest.fixture
def old_project() -> Iterator[Path]:
    """The fixture where it was written (MLflow keeps artifact locations as absolute paths)."""
    shutil.rmtree(WRITTEN_AT, ignore_errors=True)
    shutil.copytree(HERE, WRITTEN_AT)
    yield WRITTEN_AT
    shutil.rmtree(WRITTEN_AT, ignore_errors=True)


def test_a_project_of_0_4_resumes_reuses_and_loads(old_project: Path, real_data: Path) -> None:
    root = old_project
    before = StudyRecord(load_study(root, "ae-fashion-mnist"))
    assert len(before.test_reads) == 1 and list(before.promotions) == [
        before.live.best_trial.number
    ]

    again = invoke(root, "promote", "ae", "--top-k", "1")
    assert again.exit_code == 0, again.output
    assert "the test split is not read again" in again.output

    # Its champions, in vae-tune and in MLflow alone.
    tracker = Tracker(f"sqlite:///{root / 'mlflow.db'}")
    images = load_splits("fashion-mnist", real_data, val_size=100, train_size=300).val_x[:8]
    for name in ("vae-tune-fashion-mnist-ae", "vae-tune-fashion-mnist-mlp"):
        version = tracker.champion(name)
        assert version is not None, name
        ours = tracker.load_model(name, str(version.version)).eval()
        mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
        theirs = mlflow.pytorch.load_model(f"models:/{name}@champion")
        with torch.inference_mode():
            expected = theirs(images)
            got = ours.encode(images) if name.endswith("-ae") else ours(images)
        assert torch.allclose(got, expected, atol=1e-5), name

    # The head study resumes on the registered encoder, whose lineage is in the old record.
    head = invoke(root, "study", "mlp", "--n-trials", "2", *SMALL)
    assert head.exit_code == 0, head.output
    assert "vae-tune-fashion-mnist-ae version 1 (alias champion)" in head.output
    # The encoder study tops up from 2 to 3 trials in its parent run.
    parent = before.parent_run_id
    topped = invoke(root, "study", "ae", "--n-trials", "3", *SMALL)
    assert topped.exit_code == 0, topped.output
    after = StudyRecord(load_study(root, "ae-fashion-mnist"))
    assert len(after.live.trials) == 3 and after.parent_run_id == parent
    assert len(after.test_reads) == 1  # nothing read the test split again
