"""A worker with no trial left to start, while others hold the study's last places: it heals
what it can see died and waits only for trials whose end it would see. The heartbeat's
settings, from the environment. (The end-to-end cases, with real SIGKILLs, are in
test_postgres.py and test_cluster.py.)"""

from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from vae_tune.errors import StoreError
from vae_tune.project.storage import heartbeat_settings, open_storage
from vae_tune.record import TrialRecord
from vae_tune.studies.repair import HOST
from vae_tune.studies.stopping import await_places
from vae_tune.tracking.tracker import Tracker


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def study_with_a_running_trial(tmp_path: Path, worker: dict[str, object]) -> optuna.Study:
    storage = open_storage(str(tmp_path / "optuna.journal"), write=True)
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    TrialRecord(trial, storage).set_worker(worker)
    return study


@pytest.fixture
def tracker(tmp_path: Path) -> Tracker:
    return Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlartifacts")


def test_a_dead_worker_s_trial_on_this_host_frees_its_place_for_a_retry(
    tmp_path: Path, tracker: Tracker
) -> None:
    study = study_with_a_running_trial(tmp_path, {"host": HOST, "pid": dead_pid()})
    said: list[str] = []
    assert await_places(study, tracker, n_trials=1, until=math.inf, log=said.append) == 1
    [dead, retry] = study.get_trials()
    assert dead.state == TrialState.FAIL and retry.state == TrialState.WAITING
    assert retry.user_attrs["retry_of"] == 0
    assert retry.system_attrs["fixed_params"] == dead.params  # run as it was
    assert any("their worker died" in line for line in said), said


def test_a_killed_worker_not_yet_reaped_is_dead_too(tmp_path: Path, tracker: Tracker) -> None:
    """A worker killed with SIGKILL stays a zombie until its parent reaps it, and its pid
    still answers signal 0; the `--workers` parent may be waiting on the others, and they on
    its trial. It counts as dead, or the survivors wait for ever."""
    process = subprocess.Popen(["sleep", "60"])
    try:
        process.kill()
        deadline = time.monotonic() + 10
        stat = Path(f"/proc/{process.pid}/stat")
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":  # killed, not reaped
            assert time.monotonic() < deadline
            time.sleep(0.01)
        study = study_with_a_running_trial(tmp_path, {"host": HOST, "pid": process.pid})
        assert await_places(study, tracker, n_trials=1, until=time.time() + 30, log=str) == 1
        assert study.get_trials()[0].state == TrialState.FAIL
    finally:
        process.wait()


def test_another_host_s_trial_on_a_journal_is_not_waited_for(
    tmp_path: Path, tracker: Tracker
) -> None:
    """A journal has no heartbeat: a dead worker on another machine could never be told from
    a live one, so waiting for it could last for ever."""
    study = study_with_a_running_trial(tmp_path, {"host": "elsewhere", "pid": 1})
    started = time.monotonic()
    assert await_places(study, tracker, n_trials=1, until=math.inf) == 0
    assert time.monotonic() - started < 5
    assert study.get_trials()[0].state == TrialState.RUNNING


def test_a_live_worker_s_trial_is_waited_for_until_it_finishes(
    tmp_path: Path, tracker: Tracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = subprocess.Popen(["sleep", "60"])
    try:
        study = study_with_a_running_trial(tmp_path, {"host": HOST, "pid": live.pid})
        polls: list[float] = []

        def finish_it(seconds: float) -> None:  # the other worker ends its trial meanwhile
            polls.append(seconds)
            study.tell(study.get_trials()[0].number, 0.5)

        monkeypatch.setattr(time, "sleep", finish_it)
        assert await_places(study, tracker, n_trials=1, until=math.inf) == 0
        assert len(polls) == 1 and study.get_trials()[0].state == TrialState.COMPLETE
    finally:
        live.kill()
        live.wait()


def test_heartbeat_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAE_TUNE_HEARTBEAT_INTERVAL_S", raising=False)
    monkeypatch.delenv("VAE_TUNE_HEARTBEAT_GRACE_S", raising=False)
    assert heartbeat_settings() == (60, 180)
    monkeypatch.setenv("VAE_TUNE_HEARTBEAT_INTERVAL_S", "2")
    monkeypatch.setenv("VAE_TUNE_HEARTBEAT_GRACE_S", "9")
    assert heartbeat_settings() == (2, 9)
    monkeypatch.setenv("VAE_TUNE_HEARTBEAT_GRACE_S", "2")
    with pytest.raises(StoreError, match="must exceed VAE_TUNE_HEARTBEAT_INTERVAL_S=2"):
        heartbeat_settings()
    monkeypatch.setenv("VAE_TUNE_HEARTBEAT_GRACE_S", "soon")
    with pytest.raises(StoreError, match="VAE_TUNE_HEARTBEAT_GRACE_S='soon': give a whole"):
        heartbeat_settings()
