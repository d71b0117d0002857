"""`vae-tune doctor` on stores a SIGKILL left behind: finds the damage, `--fix` repairs it."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.helpers import Output, invoke, load_study, running_trial, runs_of, start, study_command

pytestmark = pytest.mark.slow  # real studies on real data, subprocesses, servers


def test_doctor_finds_and_fixes_what_a_sigkill_left(tmp_path: Path) -> None:
    command = study_command("--n-trials", "2", "--epochs", "8", "--pruner", "none")
    output = Output(start(command, tmp_path))
    assert running_trial(tmp_path, output).number == 0
    process = output.process
    process.send_signal(signal.SIGKILL)
    output.wait(timeout=60)
    client, [parent], [child] = runs_of(tmp_path)
    assert child.info.status == parent.info.status == "RUNNING"
    experiment = client.get_experiment(parent.info.experiment_id)
    orphan = Path(experiment.artifact_location.removeprefix("file://")) / ("ab" * 16)
    (orphan / "artifacts").mkdir(parents=True)

    found = invoke(tmp_path, "doctor")
    assert found.exit_code == 1, found.output
    rows = {
        line.split("│")[1].strip(): line
        for line in found.output.splitlines()
        if line.count("│") >= 3
    }
    assert "problem" in rows["ae-fashion-mnist: zombie trials (worker died)"]
    assert "problem" in rows["ae-fashion-mnist: study run"]
    assert "problem" in rows["artifact folders"]
    assert load_study(tmp_path).trials[0].state == TrialState.RUNNING, "doctor only looks"

    fixed = invoke(tmp_path, "doctor", "--fix")
    assert fixed.exit_code == 0, fixed.output
    assert invoke(tmp_path, "doctor").exit_code == 0
    trials = load_study(tmp_path).get_trials()
    assert trials[0].state == TrialState.FAIL
    assert f"worker pid {process.pid} died" == trials[0].user_attrs["fail_reason"]
    assert trials[1].state == TrialState.WAITING and trials[1].user_attrs["retry_of"] == 0
    _, [parent], [child] = runs_of(tmp_path)
    assert child.info.status == "FAILED" and parent.info.status == "KILLED"
    assert not orphan.exists()
    assert (orphan.parent / parent.info.run_id).is_dir(), "real runs' artifacts are kept"

    resumed = invoke(tmp_path, *command[1:])
    assert resumed.exit_code == 0, resumed.output
    states = [t.state for t in load_study(tmp_path).get_trials()]
    assert states[0] == TrialState.FAIL and states[1] != TrialState.WAITING
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == 2
