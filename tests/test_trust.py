"""What every figure rests on, fast, on synthetic tensors and real stores: a test read is
recorded before the files are opened, a resumed study keeps its objective, a replayed trial is
the trial, `doctor --fix` deletes only what is positively orphaned, and slips are one clear
message each."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import optuna
import pytest
import torch
from mlflow.exceptions import MlflowException

from tests.helpers import invoke
from vae_tune.data.idx import FASHION_CLASSES as CLASSES
from vae_tune.data.splits import Splits, load_splits
from vae_tune.errors import DataError, StudyMismatchError, VaeTuneError
from vae_tune.evaluation.tasks import AutoencoderTask, retrain
from vae_tune.ops.doctor import diagnose
from vae_tune.project.folder import resolve_device
from vae_tune.project.storage import open_storage
from vae_tune.record import StudyRecord, TrialRecord
from vae_tune.record.sealed import read_test_split
from vae_tune.space.samplers import make_pruner
from vae_tune.space.spaces import parse_space
from vae_tune.studies.lifecycle import StudyOptions, run_study
from vae_tune.tracking.tracker import Tracker

SPACE = """
stage: STAGE
study:
  METRIC
  pruner: {name: none}
fixed:
  train.epochs: 3
  train.batch_size: 16
  train.schedule: cosine
  model.channels: [2, 2, 2]
  model.hidden: 8
search:
  model.latent_dim: {type: int, low: 2, high: 4}
  train.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
"""


def space(stage: str = "ae", metric: str = "metric: val_loss"):
    return parse_space(SPACE.replace("STAGE", stage).replace("METRIC", metric))


def splits() -> Splits:
    torch.manual_seed(0)
    images, labels = torch.rand(64, 1, 28, 28), torch.arange(64) % 10
    return Splits("fashion-mnist", images, labels, images[:32], labels[:32], CLASSES)


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Tracker:
    root = tmp_path_factory.mktemp("mlflow")
    return Tracker(f"sqlite:///{root / 'mlflow.db'}", root / "mlartifacts")


def study_of(tmp_path: Path, tracker: Tracker, stage: str = "ae", **kwargs) -> optuna.Study:
    storage = open_storage(str(tmp_path / "optuna.journal"), write=True)
    chosen = space(stage, kwargs.pop("metric", "metric: val_loss"))
    log = kwargs.pop("log", str)
    options = StudyOptions(tmp_path.name, n_trials=kwargs.pop("n_trials", 1), **kwargs)
    run_study(chosen, AutoencoderTask(stage, splits()), storage, tracker, options, log)
    return optuna.load_study(study_name=tmp_path.name, storage=storage)


def test_a_test_read_is_recorded_before_the_files_are_opened(tmp_path: Path, tracker) -> None:
    """The test files are garbage, so the load fails: the read is on the study all the same."""
    record = StudyRecord(study_of(tmp_path, tracker))
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        with gzip.open(folder / name, "wb") as f:
            f.write(b"not an IDX file")
    lines: list[str] = []
    for attempt in (1, 2):
        with pytest.raises(DataError, match="not an unsigned-byte IDX file"):
            read_test_split(
                record,
                0,
                "promote",
                "promotion",
                data_dir=tmp_path / "data",
                device=torch.device("cpu"),
                log=lines.append,
            )
        assert len(record.test_reads) == attempt
    first, second = record.test_reads
    assert (first.trial, first.command, first.why) == (0, "promote", "promotion")
    assert first.when <= second.when and first.host
    assert "read 2, 1 before this one" in lines[-1]


def test_resuming_with_another_objective_is_refused_unless_forced(tmp_path: Path, tracker) -> None:
    # A VAE study of its beta-weighted loss, resumed on the ELBO: the same direction.
    study_of(tmp_path, tracker, "vae", metric="metric: val_loss")
    with pytest.raises(StudyMismatchError, match="another objective: val_loss, now val_neg_elbo"):
        study_of(tmp_path, tracker, "vae", metric="objective: elbo", n_trials=2)
    said: list[str] = []
    study = study_of(
        tmp_path, tracker, "vae", metric="objective: elbo", n_trials=2, force=True, log=said.append
    )
    assert len(study.trials) == 2 and StudyRecord(study).metrics == ["val_neg_elbo"]
    assert any("continuing with another objective" in line and "(--force)" in line for line in said)
    # Optuna keeps a study's directions: a maximised probe cannot continue a minimised loss.
    with pytest.raises(StudyMismatchError, match="Optuna keeps a study's directions"):
        study_of(tmp_path, tracker, "vae", metric="objective: probe", n_trials=3, force=True)


def test_a_replayed_trial_is_the_trial_at_its_epoch(tmp_path: Path, tracker) -> None:
    """Stopped at epoch 2 of its 3-epoch cosine schedule, the replay is the trial at epoch 2,
    not a 2-epoch schedule squeezed to fit."""
    study = study_of(tmp_path, tracker)
    [trial] = study.trials
    record = StudyRecord(study)
    task = AutoencoderTask("ae", splits())
    _, history = retrain(task, record.replay(trial), TrialRecord(trial).seed, 2, validate=True)
    assert [h.epoch for h in history] == [1, 2]
    assert history[-1].metrics["val_loss"] == pytest.approx(trial.intermediate_values[2], rel=1e-6)


def test_doctor_deletes_only_folders_of_runs_the_store_says_it_has_not(
    tmp_path: Path, tracker, monkeypatch
) -> None:
    experiment = tracker.experiment_id("doctor")
    live = tracker.start_run(experiment, "live")
    folder = tracker.artifact_root / "doctor"
    orphan, unsure = folder / ("ab" * 16), folder / live
    for path in (orphan, unsure):
        (path / "artifacts").mkdir(parents=True, exist_ok=True)
    real_get_run = tracker.client.get_run

    def flaky(run_id: str):  # the store fails to answer for the live run, once it is asked
        if run_id == live:
            raise MlflowException("database is locked", error_code="TEMPORARILY_UNAVAILABLE")
        return real_get_run(run_id)

    monkeypatch.setattr(tracker.client, "get_run", flaky)
    said: list[str] = []
    storage = open_storage(str(tmp_path / "optuna.journal"), write=True)
    findings = {f.check: f for f in diagnose(storage, tracker, fix=True, log=said.append)}
    assert not orphan.exists() and unsure.is_dir()
    assert said == [f"removing {orphan}: the tracking store has no run {orphan.name}"]
    assert "1 kept: the store could not say" in findings["artifact folders"].detail


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("cuda:7", "--device cuda:7"),
        ("mps", "--device mps"),
        ("xpu", "--device xpu"),
        ("banana", "--device"),
    ],
)
def test_unusable_devices_are_refused(name: str, message: str) -> None:
    if name.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    with pytest.raises(VaeTuneError, match=message):
        resolve_device(name)


def test_percentile_pruner_works_from_the_command_line_alone() -> None:
    pruner = make_pruner({"name": "percentile"}, max_epochs=4)
    assert isinstance(pruner, optuna.pruners.PercentilePruner)
    with pytest.raises(ValueError, match=r"needs a bound: give study\.pruner\.lower"):
        make_pruner({"name": "threshold"}, max_epochs=4)
    with pytest.raises(ValueError, match=r"pruner 'median'.*n_warmup"):
        make_pruner({"name": "median", "n_warmup": 2}, max_epochs=4)


def test_split_sizes_too_small_for_every_class_are_refused(real_data: Path) -> None:
    with pytest.raises(DataError, match="--val-size must be between 10"):
        load_splits("fashion-mnist", real_data, val_size=5)
    with pytest.raises(DataError, match="--val-size must be between 10"):
        load_splits("fashion-mnist", real_data, val_size=59_995)


def test_a_truncated_gzip_is_a_clear_error(tmp_path: Path, real_data: Path) -> None:
    folder = tmp_path / "mnist"
    folder.mkdir()
    shutil.copy(real_data / "mnist" / "train-labels-idx1-ubyte.gz", folder)
    whole = (real_data / "mnist" / "train-images-idx3-ubyte.gz").read_bytes()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"cannot read .*train-images-idx3-ubyte\.gz"):
        load_splits("mnist", tmp_path)


def test_loose_idx_files_are_not_taken_for_fashion_mnist(tmp_path: Path, real_data: Path) -> None:
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(real_data / "mnist" / name, tmp_path)
    with pytest.raises(DataError, match=r"cannot tell which dataset they are\. Move them into"):
        load_splits("fashion-mnist", tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["study", "ae", "--pruner", "threshold"], "pruner 'threshold' needs a bound"),
        (["study", "ae", "--device", "mps"], "--device mps: MPS"),
        (["study", "ae", "--val-size", "5"], "--val-size must be between 10"),
        (["study", "ae", "--workers", "100000"], "--workers 100000: each worker takes"),
        (["study", "ae", "--data-dir", "/etc/hostname"], "is a file; give the folder"),
        (["compare", "ae", "--trials", "-1"], "each must be 0 or more"),
        (["curve", "ae", "--sizes", "0,100"], "each must be 1 or more"),
    ],
)
def test_slips_are_one_clear_error_and_write_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = invoke(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "studies").exists() and not (tmp_path / "mlflow.db").exists()


class OutOfMemoryAbove(AutoencoderTask):
    """A task whose model cannot hold more than `limit` images a batch: an out-of-memory, as a
    GPU shared with a neighbour would raise it."""

    def __init__(self, limit: int) -> None:
        super().__init__("ae", splits())
        self.limit = limit

    def build(self, config):
        model = super().build(config)
        limit, original = self.limit, model.loss_terms

        def loss_terms(x):
            if model.training and len(x) > limit:  # a training batch (evaluation has its own)
                raise torch.OutOfMemoryError(f"CUDA out of memory: {len(x)} images (injected)")
            return original(x)

        model.loss_terms = loss_terms
        return model


def oom_study(tmp_path: Path, tracker: Tracker, limit: int) -> optuna.Study:
    storage = open_storage(str(tmp_path / "optuna.journal"), write=True)
    options = StudyOptions(tmp_path.name, n_trials=1)
    # One session: it runs the retry it enqueued itself, rather than leaving it to the next.
    run_study(space(), OutOfMemoryAbove(limit), storage, tracker, options, str)
    return optuna.load_study(study_name=tmp_path.name, storage=storage)


def test_an_out_of_memory_runs_again_once_at_half_the_batch(tmp_path: Path, tracker) -> None:
    study = oom_study(tmp_path, tracker, limit=8)  # the space's batch is 16
    first, retry = study.trials[:2]
    assert first.state == optuna.trial.TrialState.FAIL
    assert "(out of memory)" in first.user_attrs["fail_reason"]
    assert retry.user_attrs["retry_of"] == 0 and retry.user_attrs["batch_size"] == 8
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == first.params
    run = tracker.client.get_run(retry.user_attrs["mlflow_run_id"])
    assert run.data.params["train.batch_size"] == "8"
    # A promotion or replay of the retry retrains it at the batch it ran at.
    assert StudyRecord(study).replay(retry).train.batch_size == 8


def test_an_out_of_memory_again_at_half_the_batch_fails_the_trial(tmp_path: Path, tracker) -> None:
    study = oom_study(tmp_path, tracker, limit=4)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.FAIL]
    assert "out of memory" in study.trials[1].user_attrs["fail_reason"]
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.WAITING]


def test_workers_are_spread_over_the_devices_or_packed_on_request() -> None:
    from vae_tune.ops.workers import assign_devices

    spread = assign_devices(4, ["0", "1"])
    assert spread == ["0", "1", "0", "1"]
    assert {d: spread.count(d) for d in set(spread)} == {"0": 2, "1": 2}
    assert assign_devices(4, ["0", "1"], per_device=4) == ["0"] * 4
    assert assign_devices(3, []) == [None] * 3
