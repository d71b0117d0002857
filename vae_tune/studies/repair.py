"""Crash repair: trials whose worker died, MLflow runs left open, interrupted trials retried.

A worker killed with SIGKILL (or a machine that went down) leaves its Optuna trial RUNNING and
its MLflow run RUNNING for ever. Every trial records the host and pid of its worker, so on this
host a dead pid identifies the zombie; an RDB storage's heartbeat finds them on any host, after
its grace period (`storage.heartbeat_settings`). Zombies and trials interrupted by Ctrl-C or a
kill are marked FAIL with the reason and enqueued once more with the same params: their config
was never judged. Runs are closed to mirror their trial. Used at every study start (so a rerun
heals the study), by a worker with no trial left to start while others still run (so a shared
study heals itself), and by `vae-tune doctor`.
"""

from __future__ import annotations

import os
import socket
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import optuna
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from vae_tune.record import StudyRecord, TrialRecord
from vae_tune.tracking.tracker import RUN_STATUS, Tracker

HOST = socket.gethostname()
NO_WORKER_AFTER_S = 5  # a live worker records itself within milliseconds of its trial's start
_TERMINAL = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def worker_identity() -> dict[str, object]:
    """Stored on each trial: who runs it, so a later process can tell whether it still lives;
    on a cluster also its SLURM job (`JOB_TASK` for an array task), to find or cancel it."""
    identity: dict[str, object] = {"host": HOST, "pid": os.getpid()}
    job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if job and task:
        identity["slurm_job"] = f"{job}_{task}"
    elif os.environ.get("SLURM_JOB_ID"):
        identity["slurm_job"] = os.environ["SLURM_JOB_ID"]
    return identity


@dataclass
class Repairs:
    stale: list[int] = field(default_factory=list)  # failed by the heartbeat's grace period
    zombies: list[int] = field(default_factory=list)  # trial numbers marked FAIL
    retried: list[int] = field(default_factory=list)  # trial numbers enqueued again
    runs_closed: list[str] = field(default_factory=list)  # MLflow run ids ended

    def lines(self) -> list[str]:
        found = []
        if self.stale:
            found.append(
                f"trials {self.stale}: no heartbeat from their worker for the grace period; "
                "marked FAIL"
            )
        if self.zombies:
            found.append(f"trials {self.zombies}: their worker died; marked FAIL")
        if self.retried:
            found.append(f"trials {self.retried}: interrupted; enqueued again with their params")
        if self.runs_closed:
            found.append(f"{len(self.runs_closed)} MLflow run(s) of finished trials closed")
        return found


def zombie_trials(study: optuna.Study) -> list[FrozenTrial]:
    """RUNNING trials whose worker process is gone, checked on this host only. A storage with
    heartbeats (RDB: several machines) leaves every other host's trials to Optuna's heartbeat,
    which compares no clocks. A journal (one machine) also counts trials that never recorded
    a worker: a worker writes that first, so one that could not (its disk filled up the moment
    the trial was created) died then."""
    zombies = []
    now = datetime.now()
    local_only = not is_heartbeat_enabled(study._storage)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = TrialRecord(trial).worker
        if worker is None:
            started = trial.datetime_start
            age = (now - started).total_seconds() if started is not None else 0.0
            if local_only and age > NO_WORKER_AFTER_S:
                zombies.append(trial)
        elif worker["host"] == HOST and not _alive(int(worker["pid"])):
            zombies.append(trial)
    return zombies


def awaited_trials(study: optuna.Study) -> list[FrozenTrial]:
    """RUNNING trials of other processes whose end this process is sure to see, finished or
    dead: on a storage with heartbeats every one (Optuna fails it once its worker has been
    silent for the grace period); on a journal those of this host (a dead pid) and those that
    never recorded a worker. Another host's trial on a shared journal file is not awaited: if
    its worker died, nothing here could ever tell."""
    heartbeat = is_heartbeat_enabled(study._storage)
    awaited = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = TrialRecord(trial).worker
        if worker is not None and worker["host"] == HOST and worker["pid"] == os.getpid():
            continue  # this process's own (none once its optimize has returned)
        if heartbeat or worker is None or worker["host"] == HOST:
            awaited.append(trial)
    return awaited


def fail_stale(study: optuna.Study) -> list[int]:
    """Fail the trials whose worker's heartbeat stopped longer than the grace period ago (by
    the database's clock, never by two machines' clocks); their numbers. A no-op without
    heartbeats. They are FAIL without a reason, so `to_retry` retries them."""
    if not is_heartbeat_enabled(study._storage):
        return []
    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    if not running:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    # Failed by the heartbeat: no reason, unlike a trial that failed in its worker just now.
    return sorted(
        t.number for t in failed if t.number in running and TrialRecord(t).fail_reason is None
    )


def open_runs(study: optuna.Study, tracker: Tracker) -> list[tuple[str, FrozenTrial | None]]:
    """The study's trial runs still RUNNING although their trial is over. Found through the
    runs' `optuna.trial_number` tags, so a run whose id never reached the trial (the storage
    failed right after the run was created) is found too."""
    record = StudyRecord(study)
    experiment_id, parent_run_id = record.experiment_id, record.parent_run_id
    if not experiment_id or not parent_run_id:
        return []
    trials = study.get_trials(deepcopy=False)
    found = []
    for run in tracker.child_runs(experiment_id, parent_run_id):
        number = int(run.data.tags.get("optuna.trial_number", -1))
        trial = trials[number] if 0 <= number < len(trials) else None
        if run.info.status == "RUNNING" and (trial is None or trial.state in _TERMINAL):
            found.append((run.info.run_id, trial))
    return found


def to_retry(study: optuna.Study) -> list[FrozenTrial]:
    """Failed trials that were interrupted, not judged, and have not been enqueued again. A
    retry is not retried again: a configuration runs again once."""
    trials = study.get_trials(deepcopy=False)
    retried = {TrialRecord(t).retry_of for t in trials}
    return [
        t
        for t in trials
        if t.state == TrialState.FAIL
        and TrialRecord(t).needs_retry
        and TrialRecord(t).retry_of is None
        and t.number not in retried
        and t.params
    ]


def retry_interrupted(study: optuna.Study) -> list[int]:
    """Enqueue each interrupted trial once more. Two processes that see the same one at the
    same moment may both enqueue it; the later copy yields when it starts (`duplicate_retry`),
    so one retry runs."""
    numbers = []
    for trial in to_retry(study):
        study.enqueue_trial(trial.params, user_attrs=TrialRecord(trial).retry_attrs())
        numbers.append(trial.number)
    return numbers


def duplicate_retry(trial: optuna.Trial) -> int | None:
    """The earlier trial that already retries what this one retries, if any."""
    of = TrialRecord(trial).retry_of
    if of is None:
        return None
    for other in trial.study.get_trials(deepcopy=False):
        if other.number < trial.number and TrialRecord(other).retry_of == of:
            return other.number
    return None


def repair(study: optuna.Study, tracker: Tracker, retry: bool = True) -> Repairs:
    """Fail zombies, close their runs, enqueue interrupted trials again."""
    repairs = Repairs(stale=fail_stale(study))
    storage = study._storage  # the public API cannot fail another process's trial
    for trial in zombie_trials(study):
        record = TrialRecord(trial, storage)
        worker = record.worker
        reason = f"worker pid {worker['pid']} died" if worker else "its worker died at its start"
        try:
            record.set_failed(reason, interrupted=True)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process repaired it first
        repairs.zombies.append(trial.number)
    for run_id, owner in open_runs(study, tracker):
        state = owner.state.name if owner else "FAIL"
        reason = "its worker stopped without closing it"
        if owner:
            reason = TrialRecord(owner).fail_reason or reason
        tracker.end_run(
            run_id, RUN_STATUS[state], {"optuna.trial_state": state, "fail_reason": reason}
        )
        repairs.runs_closed.append(run_id)
    if retry:
        repairs.retried = retry_interrupted(study)
    return repairs


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return not _exited(pid)


def _exited(pid: int) -> bool:
    """A process that has exited and waits for its parent to reap it (state Z in Linux's
    /proc): dead, though its pid still answers signal 0. A worker killed with SIGKILL stays one
    while the `--workers` parent waits on its other workers, and they on its trial."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (not Linux), or gone since
        return False
    return stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]
