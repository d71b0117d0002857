"""Workers on several machines: processes join one study through a real PostgreSQL server, and
the survivors heal it when one of them dies."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.helpers import (
    FINISHED,
    STUDY,
    Output,
    env,
    free_port,
    runs_of,
    start,
    study_command,
)
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


HEARTBEAT = {"VAE_TUNE_HEARTBEAT_INTERVAL_S": "1", "VAE_TUNE_HEARTBEAT_GRACE_S": "8"}


def on_another_host(command: list[str], host: str) -> list[str]:
    """The command in a UTS namespace of its own, under another host name: to the study it is
    a worker on another machine, whose death only the heartbeat can reveal (no pid to check)."""
    return ["unshare", "--uts", "sh", "-c", f'hostname {host} && exec "$@"', "sh", *command]


def test_a_worker_killed_on_another_host_is_retried_and_the_study_closes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes, each under a host name of its own, share a two-trial PostgreSQL study;
    while both run a trial, one is SIGKILLed. The survivor, its own trial done, does not count
    the dead trial as taken: it waits out the heartbeat's grace period, fails it, runs its
    retry and closes the parent run FINISHED."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("a host name of its own needs a UTS namespace: root and unshare(1)")
    for name, value in HEARTBEAT.items():  # the subprocesses' environment copies it
        monkeypatch.setenv(name, value)
    with postgres_server(free_port()) as url:
        command = study_command("--n-trials", "2", "--storage", url, "--pruner", "none")
        command += ["--epochs", "5", "--train-size", "500", "--val-size", "200"]
        hosts = {h: Output(start(on_another_host(command, h), tmp_path)) for h in ("a", "b")}
        doomed, survivor = _both_running(url, hosts)
        os.kill(int(doomed.user_attrs["worker"]["pid"]), signal.SIGKILL)
        assert survivor.wait(timeout=600) == 0, survivor.text
        assert [o.wait(timeout=60) for o in hosts.values()].count(-signal.SIGKILL) == 1
        trials = optuna.load_study(study_name=STUDY, storage=url).get_trials()
    assert sum(t.state in FINISHED for t in trials) == 2, survivor.text
    assert not [t for t in trials if t.state == TrialState.RUNNING], survivor.text
    assert trials[doomed.number].state == TrialState.FAIL
    [retry] = [t for t in trials if t.user_attrs.get("retry_of") == doomed.number]
    assert retry.state in FINISHED and retry.params == doomed.params
    assert retry.user_attrs["worker"]["host"] != doomed.user_attrs["worker"]["host"]
    healed = f"repaired: trials [{doomed.number}]: no heartbeat from their worker"
    assert healed in survivor.text, survivor.text
    _, [parent], children = runs_of(tmp_path)
    assert parent.info.status == "FINISHED", survivor.text
    assert all(c.info.status != "RUNNING" for c in children)


def _both_running(url: str, hosts: dict[str, Output]) -> tuple[optuna.trial.FrozenTrial, Output]:
    """Once each host runs a trial: the trial to kill (one epoch in at least) and the other
    host's process, which lives on."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for output in hosts.values():
            assert output.process.poll() is None, output.text
        with contextlib.suppress(KeyError):  # the study is not created yet
            study = optuna.load_study(study_name=STUDY, storage=url)
            running = {
                t.user_attrs["worker"]["host"]: t
                for t in study.get_trials(states=(TrialState.RUNNING,))
                if "worker" in t.user_attrs
            }
            if set(running) == set(hosts):
                for host, trial in running.items():
                    if trial.intermediate_values:
                        [other] = set(hosts) - {host}
                        return trial, hosts[other]
        time.sleep(0.3)
    raise AssertionError("the two processes never ran a trial each at the same time")
