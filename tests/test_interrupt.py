"""Ctrl-C or a kill (SIGTERM) mid-trial: every run is closed, and the same command resumes."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.helpers import Output, env, load_study, running_trial, runs_of, start

pytestmark = pytest.mark.slow  # real studies on real data, subprocesses, servers

# Trials of 8 epochs (about 0.3 s each here), so the signal lands inside trial 0 even on a
# machine several times slower or faster.
COMMAND = [
    str(Path(sys.executable).parent / "vae-tune"),
    "study",
    "ae",
    "--n-trials",
    "2",
    "--epochs",
    "8",
    "--pruner",
    "none",
    "--train-size",
    "500",
    "--val-size",
    "200",
]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_study_closes_its_runs_and_resumes(tmp_path: Path, sig: int) -> None:
    output = Output(start(COMMAND, tmp_path))
    assert running_trial(tmp_path, output).number == 0
    output.process.send_signal(sig)
    assert output.wait(timeout=120) == 130, output.text
    assert "run the same command to resume" in output.text

    [trial] = load_study(tmp_path).get_trials()
    assert trial.state == TrialState.FAIL
    _, [parent], [child] = runs_of(tmp_path)
    assert child.info.status == "KILLED"
    assert "KeyboardInterrupt" in child.data.tags["fail_reason"]
    assert parent.info.status == "KILLED"

    resumed = subprocess.run(COMMAND, cwd=tmp_path, env=env(), text=True, capture_output=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    states = [t.state for t in load_study(tmp_path).get_trials()]
    assert states[0] == TrialState.FAIL
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == 2
    _, [parent_after], children = runs_of(tmp_path)
    assert parent_after.info.run_id == parent.info.run_id
    assert parent_after.info.status == "FINISHED"
    assert all(c.info.status != "RUNNING" for c in children) and len(children) == 3
