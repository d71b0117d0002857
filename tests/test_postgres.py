"""Workers on several machines: two processes join one study through a real PostgreSQL server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.helpers import FINISHED, env, free_port, start, study_command
from tests.postgres import postgres_server

pytestmark = pytest.mark.slow  # real studies on real data, subprocesses, servers


def test_two_processes_share_a_study_on_postgres(tmp_path: Path) -> None:
    with postgres_server(free_port()) as url:
        # Long enough trials (no pruning, 4 epochs) that the second process joins in time.
        command = study_command(
            "--n-trials", "4", "--storage", url, "--pruner", "none", "--epochs", "4"
        )
        first = start(command, tmp_path)
        output = []
        for line in first.stdout:  # the second "machine" joins once the study exists
            output.append(line)
            if "epoch 1/4" in line:
                break
        second = subprocess.run(
            command, cwd=tmp_path, env=env(), text=True, capture_output=True, timeout=600
        )
        output.append(first.stdout.read())
        assert first.wait(timeout=600) == 0, "".join(output)
        assert second.returncode == 0, second.stdout + second.stderr

        study = optuna.load_study(study_name="ae-fashion-mnist", storage=url)
        trials = study.get_trials()
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 4
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert len({t.user_attrs["worker"]["pid"] for t in finished}) == 2, "both processes ran trials"
    assert len({t.number for t in trials}) == len(trials)
    params = [tuple(sorted(t.params.items())) for t in finished]
    assert len(set(params)) == len(params), "no config was run twice"
