"""Two MLflow stores in one folder: each keeps its artifacts in a folder of its own, and
`doctor --fix` on one never deletes what the other owns."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.helpers import STUDY, TINY, invoke
from vae_tune.ops.doctor import diagnose
from vae_tune.project.folder import Project, artifact_root_of
from vae_tune.project.storage import open_storage
from vae_tune.tracking.tracker import Tracker

ORPHAN = "ab" * 16  # a run id no store has


def run_folders(root: Path) -> set[Path]:
    """Every run folder (named by a 32-hex run id) under the project's artifact roots."""
    return {p for p in root.glob("mlartifacts*/*/*") if p.is_dir() and len(p.name) == 32}


def with_artifact(tracker: Tracker, experiment_id: str, name: str) -> str:
    run_id = tracker.start_run(experiment_id, name)
    tracker.log_text(run_id, name, "note.txt")
    tracker.end_run(run_id, "FINISHED")
    return run_id


def test_each_sqlite_store_has_an_artifact_folder_of_its_own(tmp_path: Path) -> None:
    default = Project(tmp_path)
    other = Project(tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'other.db'}")
    sibling = Project(tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'other.sqlite'}")
    assert default.artifact_root == tmp_path.resolve() / "mlartifacts"  # existing projects
    roots = {p.artifact_root for p in (default, other, sibling)}
    assert len(roots) == 3, roots
    assert other.artifact_root == tmp_path.resolve() / "mlartifacts-other.db"
    assert artifact_root_of(tmp_path / "sub" / "mlflow.db") == tmp_path.resolve() / "sub" / (
        "mlartifacts"
    )


def test_doctor_keeps_what_another_store_shares_with_it_and_removes_its_own_orphan(
    tmp_path: Path,
) -> None:
    """The layout an older vae-tune wrote: `other.db`'s experiment in `mlflow.db`'s folder."""
    shared_root = tmp_path / "mlartifacts"
    main = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", shared_root)
    experiment = main.experiment_id("study")
    owned = [with_artifact(main, experiment, f"run-{i}") for i in range(2)]
    client = main.client
    client.create_registered_model("model")
    source = f"{client.get_run(owned[0]).info.artifact_uri}"
    version = client.create_model_version("model", source, run_id=owned[0])
    client.set_registered_model_alias("model", "champion", version.version)

    other = Tracker(f"sqlite:///{tmp_path / 'other.db'}", shared_root)
    its_run = with_artifact(other, other.experiment_id("study"), "its-run")
    fresh = Tracker(other.tracking_uri, artifact_root_of(tmp_path / "other.db"))
    own_location = fresh.artifact_root / "fresh"  # type: ignore[operator]
    fresh.experiment_id("fresh")
    unprovable, orphan = shared_root / "study" / ORPHAN, own_location / ORPHAN
    for path in (unprovable, orphan):
        (path / "artifacts").mkdir(parents=True)
    before = run_folders(tmp_path)

    said: list[str] = []
    storage = open_storage(str(tmp_path / "optuna.journal"), write=True)
    findings = {f.check: f for f in diagnose(storage, other, fix=True, log=said.append)}

    assert run_folders(tmp_path) == before - {orphan}
    for run_id in [*owned, its_run]:
        assert (shared_root / "study" / run_id / "artifacts").is_dir()
    assert unprovable.is_dir() and not orphan.exists()
    assert said == [f"removing {orphan}: the tracking store has no run {ORPHAN}"]
    found = findings["artifact folders"]
    assert found.state == "problem", "an orphan it could not prove its own is reported"
    assert "shared with mlflow.db" in found.detail and str(unprovable) in found.detail
    assert "2 of runs of another store" in found.detail
    assert client.get_model_version_by_alias("model", "champion").run_id == owned[0]


def test_an_unreadable_neighbour_store_deletes_nothing(tmp_path: Path) -> None:
    database = tmp_path / "other.db"
    tracker = Tracker(f"sqlite:///{database}", artifact_root_of(database))
    tracker.experiment_id("study")
    orphan = tmp_path / "mlartifacts-other.db" / "study" / ORPHAN
    (orphan / "artifacts").mkdir(parents=True)
    # A database beside it whose tables cannot be read: it may well hold this run.
    (tmp_path / "broken.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    storage = open_storage(str(tmp_path / "optuna.journal"), write=True)
    findings = {f.check: f for f in diagnose(storage, tracker, fix=True, log=print)}
    assert orphan.is_dir()
    assert findings["artifact folders"].state == "problem"
    assert "broken.db" in findings["artifact folders"].detail


@pytest.mark.slow
def test_doctor_on_another_store_leaves_every_run_folder_of_mlflow_db(tmp_path: Path) -> None:
    """A study of the same name in `mlflow.db` (promoted) and in `other.db`, one folder."""
    small = [*TINY, "--epochs", "1", "--n-trials", "1", "--pruner", "none"]
    assert (done := invoke(tmp_path, "study", "ae", *small)).exit_code == 0, done.output
    assert (done := invoke(tmp_path, "promote", "ae")).exit_code == 0, done.output
    stores = ["--storage", "studies/other.journal", "--tracking-uri", "sqlite:///other.db"]
    assert (done := invoke(tmp_path, "study", "ae", *small, *stores)).exit_code == 0, done.output

    main = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    champion = main.get_model_version_by_alias("vae-tune-fashion-mnist-ae", "champion")
    champion_folder = tmp_path / "mlartifacts" / STUDY / champion.run_id
    assert (champion_folder / "artifacts" / "model" / "MLmodel").is_file()
    other = MlflowClient(f"sqlite:///{tmp_path / 'other.db'}")
    location = other.get_experiment_by_name(STUDY).artifact_location.removeprefix("file://")
    assert Path(location) == tmp_path.resolve() / "mlartifacts-other.db" / STUDY
    orphan = Path(location) / ORPHAN
    (orphan / "artifacts").mkdir(parents=True)
    mains = {p for p in run_folders(tmp_path) if p.parent.parent.name == "mlartifacts"}
    assert champion_folder in mains and len(mains) >= 3  # trial, study, promotion runs

    fixed = invoke(tmp_path, "doctor", "--fix", *stores)
    assert fixed.exit_code == 0, fixed.output
    assert not orphan.exists()
    assert mains <= run_folders(tmp_path), "mlflow.db's run folders are all kept"
    assert (champion_folder / "artifacts" / "model" / "MLmodel").is_file()
    assert invoke(tmp_path, "doctor").exit_code == 0
