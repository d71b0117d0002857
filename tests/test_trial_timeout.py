"""`--trial-timeout`: a trial that hangs beyond the reach of signals is killed at its time-out,
failed with the reason, not retried, and the study still reaches its budget; a slow trial that
a signal can reach is interrupted instead, and its worker goes on with the next trial.

The hang is a real one in a real worker: tests/hang/sitecustomize.py, put on the subprocess's
PYTHONPATH, makes the first trial to start training block every signal and sleep. vae-tune
holds no hook for it; a hung user's trial looks the same from outside."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.helpers import FINISHED, TINY, VAE_TUNE, alive, env, load_study, runs_of
from vae_tune.errors import VaeTuneError
from vae_tune.space.extras import parse_duration

HANG = Path(__file__).resolve().parent / "hang"
TIMEOUT_S = 10  # a TINY one-epoch trial takes 2-4 s in a worker on 2 busy cores


def test_durations_are_seconds_or_units() -> None:
    assert parse_duration("90", "--trial-timeout") == 90
    assert parse_duration("1h30m", "--trial-timeout") == 5400
    assert parse_duration(2.5, "study.trial_timeout") == 2.5
    with pytest.raises(VaeTuneError, match="--trial-timeout: '10 minutes': give seconds"):
        parse_duration("10 minutes", "--trial-timeout")
    with pytest.raises(VaeTuneError, match="must be more than zero"):
        parse_duration(0, "--trial-timeout")


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_a_hung_trial_is_killed_at_its_timeout_and_not_retried(
    tmp_path: Path, workers: int
) -> None:
    marker = tmp_path / "hung.pid"
    n_trials = 2 if workers == 1 else 3
    command = [VAE_TUNE, "study", "ae", *TINY, "--epochs", "1", "--n-trials", str(n_trials)]
    command += ["--workers", str(workers), "--trial-timeout", str(TIMEOUT_S)]
    hooked = {**env(), "PYTHONPATH": str(HANG), "VAE_TUNE_TEST_HANG": str(marker)}
    done = subprocess.run(
        command, cwd=tmp_path, env=hooked, text=True, capture_output=True, timeout=300
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    hung_pid = int(marker.read_text())  # the worker whose trial hung
    assert not alive([hung_pid]), "the hung worker was killed"
    assert "did not answer its interrupt" in output
    if workers == 1:  # with two, the other worker may have run the budget meanwhile
        assert "starting worker 2 in place of vae-tune-worker-1" in output

    trials = load_study(tmp_path).get_trials()
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    assert sum(t.state in FINISHED for t in trials) == n_trials, "the study reached its budget"
    [hung] = [t for t in trials if t.user_attrs["worker"]["pid"] == hung_pid]
    assert hung.state == TrialState.FAIL
    reason = f"timed out after {TIMEOUT_S} s (--trial-timeout)"
    assert hung.user_attrs["fail_reason"] == reason
    assert hung.user_attrs["timed_out_after_s"] == TIMEOUT_S
    assert not hung.user_attrs.get("interrupted")
    assert not [t.number for t in trials if t.user_attrs.get("retry_of") == hung.number]
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [hung.number]

    _, [parent], children = runs_of(tmp_path)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["vae_tune.trial_timeout"] == f"{TIMEOUT_S} s"
    [run] = [r for r in children if r.info.run_id == hung.user_attrs["mlflow_run_id"]]
    assert run.info.status == "FAILED"
    assert run.data.tags["fail_reason"] == reason
    assert not [r.info.run_id for r in children if r.info.status == "RUNNING"]


@pytest.mark.slow
def test_a_slow_trial_is_interrupted_at_its_timeout_and_its_worker_goes_on(
    tmp_path: Path,
) -> None:
    """The graceful path: SIGUSR1 fails the slow trial inside its worker, which lives on and
    runs the next trial; nothing is killed and no worker is replaced."""
    marker = tmp_path / "slow.pid"
    command = [VAE_TUNE, "study", "ae", *TINY, "--epochs", "1", "--n-trials", "2"]
    command += ["--trial-timeout", str(TIMEOUT_S)]
    hooked = {
        **env(),
        "PYTHONPATH": str(HANG),
        "VAE_TUNE_TEST_HANG": str(marker),
        "VAE_TUNE_TEST_HANG_SIGNALS": "reach",
    }
    done = subprocess.run(
        command, cwd=tmp_path, env=hooked, text=True, capture_output=True, timeout=300
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "did not answer its interrupt" not in output
    assert "in place of" not in output, "no worker was replaced"

    slow_pid = int(marker.read_text())
    trials = load_study(tmp_path).get_trials()
    # The failed trial takes one of the two places, as a failed trial does; none is retried.
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    [slow] = [t for t in trials if t.user_attrs["worker"]["pid"] == slow_pid and t.number == 0]
    reason = f"timed out after {TIMEOUT_S} s (--trial-timeout)"
    assert slow.state == TrialState.FAIL and slow.user_attrs["fail_reason"] == reason
    after = [t for t in trials if t.number > slow.number]
    assert after and all(t.user_attrs["worker"]["pid"] == slow_pid for t in after)
    assert [t.state for t in after] == [TrialState.COMPLETE] * len(after)
    _, _, children = runs_of(tmp_path)
    [run] = [r for r in children if r.info.run_id == slow.user_attrs["mlflow_run_id"]]
    assert run.info.status == "FAILED" and run.data.tags["fail_reason"] == reason
