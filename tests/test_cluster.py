"""Many processes, one study, on a real one-node SLURM cluster with a real PostgreSQL and a real
MLflow server: the budget, the parent run and the retries belong to the study."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from tests.helpers import (
    FINISHED,
    TINY,
    VAE_TUNE,
    Output,
    free_port,
    invoke,
    listening,
    load_study,
    runs_of,
    start,
)
from tests.postgres import postgres_server
from tests.slurm import slurm_cluster, wait_for_jobs

pytestmark = pytest.mark.slow

MLFLOW = str(Path(sys.executable).parent / "mlflow")


class MlflowServer:
    """`mlflow server` on a SQLite store and a local artifact folder, as a user starts it."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            MLFLOW,
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.folder / 'mlflow.db'}",
            "--artifacts-destination",
            str(self.folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 (closed with the process)
        quiet = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runners
        self.process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=quiet
        )
        deadline = time.monotonic() + 120
        while not listening(self.port):
            assert self.process.poll() is None, (self.folder / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the MLflow server did not start"
            time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
        deadline = time.monotonic() + 30
        while listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    """One PostgreSQL server for the module; each test's study has a name of its own."""
    with postgres_server(free_port()) as url:
        yield url


@pytest.fixture
def stores(tmp_path: Path, database: str) -> Iterator[tuple[str, MlflowServer]]:
    server = MlflowServer(tmp_path)
    server.start()
    try:
        yield database, server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, str]]:
    with slurm_cluster() as slurm_env:
        old = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = slurm_env["SLURM_CONF"]  # sbatch, run by vae-tune, reads it
        try:
            yield slurm_env
        finally:
            os.environ.pop("SLURM_CONF") if old is None else os.environ.update(SLURM_CONF=old)


def submit_args(study: str, url: str, tracking: str, tasks: int) -> list[str]:
    return [
        "submit",
        "study",
        "ae",
        "--study-name",
        study,
        "--tasks",
        str(tasks),
        "--storage",
        url,
        "--tracking-uri",
        tracking,
        "--allow-local-stores",
    ]


def job_ids(output: str) -> list[str]:
    """The jobs `vae-tune submit` printed it submitted (its `squeue -j` line)."""
    found = re.search(r"squeue -j ([\d,]+)", output)
    assert found, output
    return found.group(1).split(",")


def study_of(url: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=url)


def test_an_array_of_three_tasks_runs_one_study_of_nine_trials_then_promotes(
    tmp_path: Path, stores, cluster
) -> None:
    url, server = stores
    project = tmp_path / "project"
    project.mkdir()
    result = invoke(
        project,
        *submit_args("array", url, server.url, tasks=3),
        "--n-trials",
        "9",
        *TINY,
        # Each task then keeps its trials from a supervising process (ops/workers.py), and the
        # target is one no AE reaches: both travel to the tasks and are recorded on the study.
        "--trial-timeout",
        "5m",
        "--target",
        "0.0001",
    )
    assert result.exit_code == 0, result.output
    ids = job_ids(result.output)
    assert len(ids) == 2, result.output
    scripts = sorted(p.name for p in (project / "slurm").glob("*.sbatch"))
    assert [s.split("-2")[0] for s in scripts] == ["promote-ae", "study-ae"]
    wait_for_jobs(ids, cluster)
    logs = "\n".join(p.read_text() for p in (project / "slurm" / "logs").glob("*.out"))

    trials = study_of(url, "array").get_trials()
    finished = [t for t in trials if t.state in FINISHED]
    assert len(finished) == 9, logs
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # Every task joined the one study and left it cleanly; how the 9 trials fell between them
    # depends on when SLURM started each (on a busy node the first may take them all).
    task_logs = [p.read_text() for p in (project / "slurm" / "logs").glob("*study-ae*.out")]
    assert len(task_logs) == 3, logs
    for log in task_logs:
        assert "study array:" in log and "Traceback" not in log, log
    assert {t.user_attrs["worker"]["slurm_job"] for t in finished} <= {
        f"{ids[0]}_{task}" for task in range(3)
    }
    startup = sorted(finished, key=lambda t: t.number)[:5]
    params = [tuple(sorted(t.params.items())) for t in startup]
    assert len(set(params)) == 5, "every task drew its own start-up configurations"

    client = MlflowClient(server.url)
    experiment = client.get_experiment_by_name("array")
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("vae_tune.role") == "study"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED" and all(r.info.status != "RUNNING" for r in runs)
    assert parent.data.tags["vae_tune.trial_timeout"] == "300 s"
    assert parent.data.tags["vae_tune.target"] == "0.0001"
    assert parent.info.end_time >= max(r.info.end_time for r in children), "closed after all"
    champion = client.get_model_version_by_alias("vae-tune-fashion-mnist-ae", "champion")
    assert champion.tags["study"] == "array"


def trial_mid_epochs(url: str, study: str, timeout: float = 600.0) -> FrozenTrial:
    """A RUNNING trial of the study with at least one epoch reported: one to stop mid-trial."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "no trial started"
        with contextlib.suppress(KeyError):  # the study is not created yet
            running = study_of(url, study).get_trials(states=(TrialState.RUNNING,))
            victim = next((t for t in running if len(t.intermediate_values) >= 1), None)
            if victim is not None:
                return victim
        time.sleep(0.3)


def test_a_cancelled_task_s_trial_runs_again_and_the_study_reaches_its_budget(
    tmp_path: Path, stores, cluster
) -> None:
    url, server = stores
    project = tmp_path / "project"
    project.mkdir()
    result = invoke(
        project,
        *submit_args("cancel", url, server.url, tasks=2),
        "--n-trials",
        "3",
        "--pruner",
        "none",
        *TINY,
        "--epochs",
        "8",
    )
    assert result.exit_code == 0, result.output
    ids = job_ids(result.output)
    victim = trial_mid_epochs(url, "cancel")
    cancelled = subprocess.run(["scancel", victim.user_attrs["worker"]["slurm_job"]], env=cluster)
    assert cancelled.returncode == 0
    wait_for_jobs(ids[:1], cluster)  # the array; its promotion is another test's
    subprocess.run(["scancel", ids[1]], env=cluster)

    trials = study_of(url, "cancel").get_trials()
    failed = trials[victim.number]
    assert failed.state == TrialState.FAIL and "interrupted" in failed.user_attrs["fail_reason"]
    [retry] = [
        t for t in trials if t.user_attrs.get("retry_of") == victim.number and t.state in FINISHED
    ]
    assert retry.params == victim.params
    assert sum(t.state in FINISHED for t in trials) == 3
    client = MlflowClient(server.url)
    runs = client.search_runs([client.get_experiment_by_name("cancel").experiment_id])
    assert all(r.info.status != "RUNNING" for r in runs)


def test_a_task_killed_mid_trial_is_healed_by_the_others_and_the_study_closes(
    tmp_path: Path, stores, cluster
) -> None:
    """One array task's vae-tune is SIGKILLed in the middle of a trial: nothing of it cleans
    up. The other task, its own trials done, does not stop on the dead trial's place: it fails
    it (on another node, once the heartbeat's grace period, shortened here, has passed), runs
    its retry, and closes the parent run FINISHED."""
    url, server = stores
    project = tmp_path / "project"
    project.mkdir()
    heartbeat = {"VAE_TUNE_HEARTBEAT_INTERVAL_S": "1", "VAE_TUNE_HEARTBEAT_GRACE_S": "8"}
    result = invoke(
        project,
        *submit_args("killed", url, server.url, tasks=2),
        "--n-trials",
        "3",
        "--pruner",
        "none",
        *TINY,
        "--epochs",
        "6",
        env=heartbeat,  # sbatch passes the submitting environment on to the tasks
    )
    assert result.exit_code == 0, result.output
    ids = job_ids(result.output)
    victim = trial_mid_epochs(url, "killed")
    os.kill(int(victim.user_attrs["worker"]["pid"]), signal.SIGKILL)
    wait_for_jobs(ids[:1], cluster)  # the array; its promotion is another test's
    subprocess.run(["scancel", ids[1]], env=cluster)
    logs = "\n".join(p.read_text() for p in (project / "slurm" / "logs").glob("*study-ae*.out"))

    trials = study_of(url, "killed").get_trials()
    assert sum(t.state in FINISHED for t in trials) == 3, logs
    assert not [t for t in trials if t.state == TrialState.RUNNING], logs
    assert trials[victim.number].state == TrialState.FAIL, logs
    [retry] = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    # Who repairs it depends on timing, both ways are the product's: a survivor still running
    # trials sees it at its next trial (Optuna's heartbeat check, then the retry callback);
    # one with no trial left waits for the last places and repairs it ("repaired: trials").
    assert retry.state in FINISHED and retry.params == victim.params, logs
    client = MlflowClient(server.url)
    runs = client.search_runs([client.get_experiment_by_name("killed").experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("vae_tune.role") == "study"]
    assert parent.info.status == "FINISHED", logs
    assert all(r.info.status != "RUNNING" for r in runs), logs


def test_a_tracking_server_down_for_30_s_loses_no_trial(tmp_path: Path, stores) -> None:
    url, server = stores
    command = [VAE_TUNE, "study", "ae", "--study-name", "outage", *TINY, "--n-trials", "2"]
    command += ["--epochs", "5", "--pruner", "none", "--storage", url, "--tracking-uri", server.url]
    output = Output(start(command, tmp_path))
    deadline = time.monotonic() + 600
    while True:  # the first trial is under way
        with contextlib.suppress(KeyError):
            if study_of(url, "outage").get_trials(states=(TrialState.RUNNING,)):
                break
        assert output.process.poll() is None and time.monotonic() < deadline, output.text
        time.sleep(0.5)
    server.stop()
    time.sleep(30)
    server.start()
    assert output.wait(timeout=900) == 0, output.text
    trials = study_of(url, "outage").get_trials()
    assert sum(t.state in FINISHED for t in trials) == 2, output.text
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    client = MlflowClient(server.url)
    runs = client.search_runs([client.get_experiment_by_name("outage").experiment_id])
    assert runs and all(r.info.status != "RUNNING" for r in runs), output.text


def test_two_processes_started_in_the_same_second_draw_different_configurations(
    tmp_path: Path,
) -> None:
    """Each takes one of the study's two trials: their configurations differ, and one parent
    run holds both."""
    command = [
        VAE_TUNE,
        "study",
        "ae",
        *TINY,
        "--n-trials",
        "2",
        "--epochs",
        "4",
        "--pruner",
        "none",
    ]
    first, second = (Output(start(command, tmp_path)) for _ in range(2))
    assert first.wait(timeout=600) == 0, first.text
    assert second.wait(timeout=600) == 0, second.text
    trials = [t for t in load_study(tmp_path).get_trials() if t.state in FINISHED]
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) == 2, first.text + second.text
    assert trials[0].params != trials[1].params
    _, parents, children = runs_of(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
