"""The trial state matrix on small synthetic tensors, fast: each Optuna state is mirrored by its
MLflow run (COMPLETE -> FINISHED, PRUNED -> KILLED, FAIL -> FAILED, interrupted -> KILLED),
with the facts the record keeps; the tables and the report read those stores back; the stop
rules and the journal's torn-record healing work on their own."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import optuna
import optuna_dashboard
import pytest
import torch
from optuna.trial import TrialState

from vae_tune.analysis.report import build_report
from vae_tune.analysis.tables import study_rows, trials_table
from vae_tune.data.idx import FASHION_CLASSES as CLASSES
from vae_tune.data.splits import Splits
from vae_tune.evaluation.tasks import AutoencoderTask
from vae_tune.logs import quiet_libraries
from vae_tune.progress import PlainProgress
from vae_tune.project.storage import open_storage
from vae_tune.record import StudyRecord, TrialRecord
from vae_tune.space.spaces import parse_space
from vae_tune.studies.lifecycle import StudyOptions, run_study
from vae_tune.studies.objective import Objective, TrialContext, trial_seed
from vae_tune.studies.stopping import stop_when_taken, surplus
from vae_tune.tracking import links, mlflow_view
from vae_tune.tracking.metrics import MetricBuffer
from vae_tune.tracking.tracker import Tracker

SPACE = """
stage: ae
study:
  metric: val_loss
  pruner: {name: PRUNER}
fixed:
  train.epochs: 2
  train.batch_size: 32
  model.channels: [2, 2, 2]
  model.hidden: 8
search:
  model.latent_dim: {type: int, low: 2, high: 4}
  train.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
"""


def splits(nan: bool = False) -> Splits:
    torch.manual_seed(0)
    images, labels = torch.rand(64, 1, 28, 28), torch.arange(64) % 10
    if nan:
        images[0, 0, 0, 0] = float("nan")
    return Splits("fashion-mnist", images, labels, images[:32].nan_to_num(), labels[:32], CLASSES)


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Tracker:
    """One MLflow store for the module (creating one takes seconds); a study per test."""
    root = tmp_path_factory.mktemp("mlflow")
    return Tracker(f"sqlite:///{root / 'mlflow.db'}", root / "mlartifacts")


def study_of(
    tmp_path: Path, tracker: Tracker, pruner: str = "none", nan: bool = False, n_trials: int = 1
):
    """Run a real study (journal storage, SQLite MLflow) on synthetic images."""
    space = parse_space(SPACE.replace("PRUNER", pruner))
    storage = open_storage(str(tmp_path / "optuna.journal"), write=True)
    options = StudyOptions(tmp_path.name, n_trials=n_trials)
    summary = run_study(space, AutoencoderTask("ae", splits(nan)), storage, tracker, options, str)
    study = optuna.load_study(study_name=tmp_path.name, storage=storage)
    return study, summary


def run_of(tracker: Tracker, trial: optuna.trial.FrozenTrial):
    run_id = TrialRecord(trial).run_id
    assert run_id is not None
    return tracker.client.get_run(run_id)


def test_complete_trial_is_a_finished_run_with_its_record(tmp_path: Path, tracker) -> None:
    study, summary = study_of(tmp_path, tracker)
    [trial] = study.trials
    record = TrialRecord(trial)
    run = run_of(tracker, trial)
    assert trial.state == TrialState.COMPLETE and run.info.status == "FINISHED"
    assert run.data.tags["optuna.trial_state"] == "COMPLETE"
    assert record.seed == trial_seed(0, 0) and record.best_epoch in (1, 2)
    assert trial.value == min(trial.intermediate_values.values())
    assert run.data.metrics["best_val_loss"] == trial.value
    assert summary.best_run_id == run.info.run_id
    parent = tracker.client.get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == (
        parent.info.run_id
    )
    # Its picture, and the study's picture of its best trials.
    artifacts = {a.path for a in tracker.client.list_artifacts(run.info.run_id)}
    assert "recon.png" in artifacts and "weights" in artifacts  # what --no-retrain promotes
    assert tracker.artifact_bytes(summary.parent_run_id, "compare/recon_topk.png")
    # Its note in optuna-dashboard links to the run (notes live on the study's attributes).
    live_trial = optuna.Trial(study, trial._trial_id)
    assert f"MLflow run [{run.info.run_id}]" in optuna_dashboard.get_note(live_trial)


def test_pruned_trial_is_a_killed_run_with_its_epoch(tmp_path: Path, tracker) -> None:
    # A threshold no loss is under: the pruner stops every trial after its first epoch.
    study, _ = study_of(tmp_path, tracker, pruner="threshold, upper: 0.0")
    [trial] = study.trials
    run = run_of(tracker, trial)
    assert trial.state == TrialState.PRUNED and run.info.status == "KILLED"
    assert TrialRecord(trial).pruned_at_epoch == 1
    assert run.data.tags["pruned_at_epoch"] == "1"
    artifacts = {a.path for a in tracker.client.list_artifacts(run.info.run_id)}
    assert "recon.png" in artifacts and "weights" not in artifacts  # kept: complete trials'
    assert "pruned at epoch 1" in run.data.tags["prune_reason"]
    # Its one epoch's metrics, buffered, reached the run as it ended.
    [loss] = tracker.client.get_metric_history(run.info.run_id, "val_loss")
    assert loss.step == 1 and loss.value == trial.intermediate_values[1]


def test_epoch_metrics_are_written_together_and_all_reach_the_run(tracker) -> None:
    experiment = tracker.experiment_id("buffered")
    run_id = tracker.start_run(experiment, "slow-store")
    buffered = MetricBuffer(tracker, run_id, every_s=3600.0)
    for epoch in (1, 2, 3):
        buffered.log({"val_loss": 1.0 / epoch, "epoch_time_s": 0.1}, step=epoch)
    assert tracker.client.get_run(run_id).data.metrics == {}  # nothing written yet
    # More metrics, params and tags than MLflow takes in one batch: they are split.
    buffered.log({f"m{i}": float(i) for i in range(1200)}, step=3)
    tracker.log_params(run_id, {f"p{i}": i for i in range(150)})
    tags = {"done": "yes", **{f"t{i}": i for i in range(150)}}
    tracker.end_run(run_id, "FINISHED", tags, buffered)
    run = tracker.client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["done"] == "yes"
    assert len(run.data.metrics) == 2 + 1200 and len(run.data.params) == 150
    assert {f"t{i}" for i in range(150)} <= run.data.tags.keys()
    history = tracker.client.get_metric_history(run_id, "val_loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, 1.0 / 3)]
    # A store written every epoch when the interval has passed (a slow CPU epoch).
    live_id = tracker.start_run(experiment, "live")
    MetricBuffer(tracker, live_id, every_s=0.0).log({"val_loss": 0.25}, step=1)
    assert tracker.client.get_run(live_id).data.metrics == {"val_loss": 0.25}


def test_nan_loss_is_a_failed_run_not_retried(tmp_path: Path, tracker) -> None:
    study, summary = study_of(tmp_path, tracker, nan=True)
    [trial] = study.trials
    run = run_of(tracker, trial)
    assert trial.state == TrialState.FAIL and run.info.status == "FAILED"
    assert "non-finite train loss at epoch 1" in run.data.tags["fail_reason"]
    assert not TrialRecord(trial).needs_retry  # the config failed: running it again is useless
    assert summary.counts["FAIL"] == 1 and summary.best_value is None


def test_interrupted_trial_is_a_killed_run_marked_for_retry(tracker) -> None:
    space = parse_space(SPACE.replace("PRUNER", "none"))
    study = optuna.create_study(study_name="ctrl-c")
    experiment = tracker.experiment_id("ctrl-c")
    parent = tracker.start_run(experiment, "ctrl-c")
    task = AutoencoderTask("ae", splits())
    context = TrialContext(
        space, task, tracker, "ctrl-c", experiment, parent, 1, 0, torch.device("cpu")
    )

    class CtrlC(PlainProgress):
        def epoch(self, update, seconds) -> None:  # Ctrl-C lands during the first epoch's report
            raise KeyboardInterrupt

    trial = study.ask()
    with pytest.raises(KeyboardInterrupt):
        Objective(context, CtrlC(str))(trial)
    record = TrialRecord(study.trials[0])
    run = tracker.client.get_run(record.run_id or "")
    assert run.info.status == "KILLED" and record.needs_retry
    assert run.data.tags["optuna.trial_state"] == "FAIL"


def test_tables_and_report_read_the_stores_back(tmp_path: Path, tracker) -> None:
    study, _ = study_of(tmp_path, tracker, n_trials=2)
    [row] = study_rows(study._storage)
    facts = (row["study"], row["stage"], row["complete"], row["best"])
    assert facts == (tmp_path.name, "ae", 2, study.best_value)
    frame = trials_table(study, tracker)
    assert list(frame["number"]) == [0, 1]
    assert set(frame["mlflow_status"]) == {"FINISHED"}
    assert frame.loc[0, "mlflow.val_loss"] == study.trials[0].intermediate_values[2]
    report = build_report(study._storage, tracker, "fashion-mnist")
    assert f"| {tmp_path.name} | ae | val_loss (minimize) | 2 | 0 | 0 |" in report
    assert StudyRecord(study).settings.train_size == 64


def test_surplus_trials_yield_so_exactly_n_trials_finish() -> None:
    study = optuna.create_study()
    first, second, third = study.ask(), study.ask(), study.ask()  # three workers at once
    study.tell(first, 1.0)
    assert not surplus(second, n_trials=2)
    assert surplus(third, n_trials=2)  # the newest running trial yields
    stopped = []
    study.stop = lambda: stopped.append(True)  # type: ignore[method-assign]
    stop_when_taken(2)(study, study.trials[0])
    assert stopped


def test_a_torn_journal_record_is_dropped_on_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "optuna.journal"
    study = optuna.create_study(study_name="torn", storage=open_storage(str(path), write=True))
    study.tell(study.ask(), 1.0)
    whole = path.read_bytes()
    with path.open("ab") as journal:
        journal.write(b'{"op_code": 4, "worker_id": "x", "tri')  # a crash mid-write
    healed = open_storage(str(path), write=True)
    assert path.read_bytes() == whole
    again = optuna.load_study(study_name="torn", storage=healed)
    again.tell(again.ask(), 2.0)  # the next append reads back
    reread = optuna.load_study(study_name="torn", storage=open_storage(str(path)))
    assert [t.value for t in reread.trials] == [1.0, 2.0]


def test_the_study_view_and_tags_tell_states_and_the_best(tmp_path: Path, tracker) -> None:
    """The runs table's view of a study (MLflow experiment tag) names its metric, sort and
    every searched parameter; each trial's run says its state with the pruned epoch; the mark
    of the best trial moves to the new best and leaves the old one."""
    study, summary = study_of(tmp_path, tracker, n_trials=2)
    experiment = tracker.client.get_experiment(summary.experiment_id)
    state = json.loads(json.loads(experiment.tags[mlflow_view.VIEW_TAG])["state"])
    assert state["orderByKey"] == "metrics.`val_loss`" and state["orderByAsc"] is True
    expected = {"metrics.`val_loss`", "params.`model.latent_dim`", "params.`train.lr`"}
    assert expected | {"tags.`trial.state`"} <= set(state["selectedColumns"])
    runs = {t.number: run_of(tracker, t) for t in study.trials}
    best = [n for n, run in runs.items() if run.data.tags.get(mlflow_view.BEST_TAG) == "true"]
    assert best == [study.best_trial.number]
    assert {r.data.tags[mlflow_view.STATE_TAG] for r in runs.values()} == {"COMPLETE"}
    assert {r.data.tags[mlflow_view.EPOCHS_TAG] for r in runs.values()} == {"2"}
    # The top-k view shows the runs marked top, each with its value in full (its chart would
    # print 2 decimals), its pictures' keys and their values as charts.
    for trial in study.trials:
        tags = runs[trial.number].data.tags
        assert (
            tags[mlflow_view.TOP_TAG] == "true" and tags["Value val_loss"] == f"{trial.value:.6g}"
        )
    topk = json.loads(json.loads(experiment.tags[mlflow_view.TOPK_VIEW_TAG])["state"])
    assert topk["searchFilter"] == "tags.`trial.top_k` = 'true'"
    assert (
        topk["orderByKey"] == state["orderByKey"]
        and topk["selectedColumns"] == state["selectedColumns"]
    )
    charts = {c["type"]: c for c in topk["compareRunCharts"]}
    assert charts["IMAGE"]["imageKeys"] == ["reconstructions", "validation images"]
    assert charts["DIFFERENCE"]["compareGroups"][0] == "Tags"
    images = {
        a.path.split("+")[0] for a in tracker.client.list_artifacts(runs[0].info.run_id, "images")
    }
    assert images == {"images/reconstructions", "images/validation images"}
    # A mark another process left on a run that is no longer the best (two trials ending at
    # the same moment) is put right when the study closes.
    worse = next(n for n in runs if n != study.best_trial.number)
    tracker.set_tags(runs[worse].info.run_id, {mlflow_view.BEST_TAG: "true"})  # a stale mark
    mlflow_view.mark_best(tracker, study)
    marked = tracker.runs(summary.experiment_id, {mlflow_view.BEST_TAG: "true"})
    assert [r.info.run_id for r in marked] == [runs[study.best_trial.number].info.run_id]
    # A pruned trial says so, with its epoch, where a failed one would say FAIL.
    (tmp_path / "pruned").mkdir()
    pruned_study, _ = study_of(tmp_path / "pruned", tracker, pruner="threshold, upper: 0.0")
    tags = run_of(tracker, pruned_study.trials[0]).data.tags
    assert tags[mlflow_view.STATE_TAG] == "PRUNED at epoch 1" and tags["trial.epochs"] == "1"
    assert mlflow_view.BEST_TAG not in tags  # no complete trial: no best
    (tmp_path / "failed").mkdir()
    failed_study, _ = study_of(tmp_path / "failed", tracker, nan=True)
    assert run_of(tracker, failed_study.trials[0]).data.tags[mlflow_view.STATE_TAG] == "FAIL"


def test_picture_parts_are_logged_only_for_trials_that_end_in_the_top_k(
    tmp_path: Path, tracker
) -> None:
    """`log_image` costs a trial ~0.05 s, and only the top-k view shows its images: a trial
    logs them when it ends among the k best so far, and no other does."""
    n = 3 * links.TOP_K  # trials take ~0.15 s; of the last ten, some end outside the top k
    study, _ = study_of(tmp_path, tracker, n_trials=n)
    entered = set()
    for trial in study.trials:
        before = sorted(t.value for t in study.trials[: trial.number + 1])
        if before.index(trial.value) < links.TOP_K:
            entered.add(trial.number)
    logged = {
        t.number
        for t in study.trials
        if tracker.client.list_artifacts(run_of(tracker, t).info.run_id, "images")
    }
    assert logged == entered, (sorted(logged), sorted(entered))
    assert len(entered) < n, "every trial entered the top k: the test proves nothing"


def test_a_failed_trial_is_told_by_vae_tune_alone_not_again_by_optuna_with_a_traceback() -> None:
    """Optuna warns of each failed trial with its traceback; vae-tune tells each failure itself
    (its reason in both stores, one log line), so a surplus trial at the end of a SLURM array
    printed a traceback into a healthy job's log. quiet_libraries drops that warning only."""
    quiet_libraries()
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logging.getLogger("optuna").addHandler(handler)
    try:
        study = optuna.create_study()
        study.optimize(
            lambda t: 1 / 0 if t.number == 0 else 1.0, n_trials=2, catch=(ZeroDivisionError,)
        )
        logging.getLogger("optuna.study").warning("another warning")
    finally:
        logging.getLogger("optuna").removeHandler(handler)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert [r.getMessage() for r in seen] == ["another warning"]
