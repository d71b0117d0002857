"""`--trial-timeout`: a hard time limit per trial, kept from outside the trial.

Optuna has no per-trial limit, and a trial that hangs (a stuck read, a deadlock, code that
blocks signals) cannot stop itself. So with a trial time-out the study always runs in worker
processes, one too, watched by the process that started them (`ops/workers.py`): the same path
on one machine and in each SLURM task. Every POLL_S the `Supervisor` looks at its workers'
running trials; one that has run past the limit is

1. recorded as timed out on the trial (`TrialRecord.set_timed_out`) before anything is
   signalled, so crash repair never takes it for a dead worker and retries it;
2. interrupted: SIGUSR1 makes its worker raise `TrialTimeoutError` inside that trial (only that
   one: the worker compares the trial number the supervisor set), which fails the trial and
   closes its MLflow run FAILED; the worker goes on with its next trial;
3. where the trial is still running GRACE_S later, killed with its worker (SIGKILL), marked
   FAIL, its run closed FAILED, and the worker replaced while the study wants more trials.

A trial's start is its `datetime_start`, written by its worker on this host: the supervisor
compares it with the same machine's clock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from datetime import datetime
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from types import FrameType
from typing import Any, TypeVar

import optuna
from optuna.trial import TrialState

from vae_tune.errors import VaeTuneError
from vae_tune.record import TrialRecord
from vae_tune.studies.repair import HOST, repair
from vae_tune.tracking.tracker import Tracker

POLL_S = 0.5
GRACE_S = 5.0  # for a trial to end after its interrupt: closing an MLflow run takes < 1 s
Log = Callable[[str], None]
R = TypeVar("R")

_current: int | None = None  # the trial this worker runs now, while it runs
_wanted: Synchronized[int] | None = None  # the trial the supervisor times out (-1: none)


class TrialTimeoutError(VaeTuneError):
    """Raised inside a trial that ran past --trial-timeout: the trial fails, the worker lives."""


def guarded(objective: Callable[[optuna.Trial], R]) -> Callable[[optuna.Trial], R]:
    """The objective, telling this worker's interrupt handler which trial runs."""

    def run(trial: optuna.Trial) -> R:
        global _current
        _current = trial.number
        try:
            return objective(trial)
        finally:
            _current = None

    return run


def install(wanted: Synchronized[int]) -> None:
    """In a worker: SIGUSR1 interrupts the trial the supervisor named, and nothing else (a
    signal that arrives after that trial ended is ignored)."""
    global _wanted
    _wanted = wanted
    signal.signal(signal.SIGUSR1, _interrupt)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if _current is not None and _wanted is not None and _wanted.value == _current:
        raise TrialTimeoutError(f"trial {_current} timed out (--trial-timeout)")


class Supervisor:
    """Watches the running trials of this process's workers and stops those past the limit."""

    def __init__(self, study: optuna.Study, tracker: Tracker, seconds: float, log: Log) -> None:
        self.study = study
        self.tracker = tracker
        self.seconds = seconds
        self.log = log
        self.interrupted: dict[int, float] = {}  # trial number -> time.monotonic() signalled

    def check(self, workers: dict[BaseProcess, Any]) -> list[BaseProcess]:
        """Time out what ran too long; the workers killed for it (to be replaced). `workers`
        maps each worker process to its shared `wanted` trial number."""
        by_pid = {w.pid: w for w in workers if w.is_alive()}
        killed = []
        now = datetime.now()
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = TrialRecord(trial).worker or {}
            process = by_pid.get(worker.get("pid")) if worker.get("host") == HOST else None
            if process is None or trial.datetime_start is None:
                continue
            if trial.number not in self.interrupted:
                if (now - trial.datetime_start).total_seconds() > self.seconds:
                    self._interrupt(trial, process, workers[process])
            elif time.monotonic() - self.interrupted[trial.number] > GRACE_S:
                self._kill(trial, process)
                killed.append(process)
        return killed

    def _interrupt(
        self, trial: optuna.trial.FrozenTrial, process: BaseProcess, wanted: Any
    ) -> None:
        try:  # first the record: nothing may take the trial for a dead worker's and retry it
            reason = TrialRecord(trial, self.study._storage).set_timed_out(self.seconds)
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # it ended just now
        self.interrupted[trial.number] = time.monotonic()
        self.log(f"trial {trial.number} {reason}: interrupting its worker (pid {process.pid})")
        wanted.value = trial.number
        assert process.pid is not None
        os.kill(process.pid, signal.SIGUSR1)

    def _kill(self, trial: optuna.trial.FrozenTrial, process: BaseProcess) -> None:
        self.log(
            f"trial {trial.number} did not answer its interrupt in {GRACE_S:.0f} s: killing "
            f"its worker (pid {process.pid})"
        )
        process.kill()  # SIGKILL: no signal mask or hung call survives it
        process.join(30)
        storage = self.study._storage
        # Another process's repair may get there first: the record keeps the time-out.
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        repair(self.study, self.tracker)  # its MLflow run, closed FAILED with the reason
