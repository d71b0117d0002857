"""Several workers on one study, and a worker killed with SIGKILL: nothing repeated or lost."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.helpers import (
    FINISHED,
    TINY,
    Output,
    env,
    load_study,
    running_trial,
    runs_of,
    start,
    study_command,
)

pytestmark = pytest.mark.slow  # real studies on real data, subprocesses, servers


def assert_trials_and_runs_agree(root: Path, n_finished: int) -> None:
    """Every trial has exactly one closed run that mirrors it, and the study holds n_finished."""
    trials = load_study(root).get_trials()
    assert sum(t.state in FINISHED for t in trials) == n_finished
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    _, [parent], children = runs_of(root)
    assert parent.info.status == "FINISHED"
    runs = {r.info.run_id: r for r in children}
    started = [t for t in trials if "mlflow_run_id" in t.user_attrs]
    assert len(runs) == len(started), "one MLflow child run per trial that started"
    status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
    for trial in started:
        run = runs[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["optuna.trial_number"] == str(trial.number)
        if trial.state == TrialState.COMPLETE:
            assert run.info.status == "FINISHED"
            assert run.data.metrics["best_val_loss"] == trial.value
        elif not trial.user_attrs.get("interrupted"):
            assert run.info.status == status[trial.state.name]


def test_two_workers_share_one_study(tmp_path: Path) -> None:
    result = subprocess.run(
        study_command("--n-trials", "4", "--workers", "2"),
        cwd=tmp_path,
        env=env(),
        text=True,
        capture_output=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "locked" not in output.lower()
    assert "[worker 1]" in output and "[worker 2]" in output
    assert_trials_and_runs_agree(tmp_path, n_finished=4)

    trials = [t for t in load_study(tmp_path).get_trials() if t.state in FINISHED]
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) == 2, "both workers ran trials"
    assert len({t.user_attrs["seed"] for t in trials}) == len(trials), "one seed per trial"
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == len(params), "no config was sampled twice"


def test_worker_killed_with_sigkill_is_repaired_on_restart(tmp_path: Path) -> None:
    command = [*study_command("--n-trials", "3", "--workers", "2"), *TINY, "--epochs", "6"]
    output = Output(start(command, tmp_path))
    victim = running_trial(tmp_path, output)  # a worker is inside a trial
    os.kill(victim.user_attrs["worker"]["pid"], signal.SIGKILL)
    output.wait(timeout=600)
    assert "repaired: trials [" in output.text, output.text

    # The parent saw its worker die: the trial is failed, its run closed, its params enqueued.
    killed = load_study(tmp_path).trials[victim.number]
    assert killed.state == TrialState.FAIL, output.text
    assert "died" in killed.user_attrs["fail_reason"]
    client, _, _ = runs_of(tmp_path)
    assert client.get_run(killed.user_attrs["mlflow_run_id"]).info.status == "FAILED"

    rerun = subprocess.run(
        command, cwd=tmp_path, env=env(), text=True, capture_output=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert_trials_and_runs_agree(tmp_path, n_finished=3)
    retried = [
        t
        for t in load_study(tmp_path).get_trials()
        if t.user_attrs.get("retry_of") == victim.number
    ]
    assert len(retried) == 1 and retried[0].params == victim.params
    assert retried[0].state in FINISHED
