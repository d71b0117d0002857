"""When a study stops starting trials: its n_trials taken (by every worker), no new best for
`patience` finished trials, a complete trial that reached `--target`, or a deadline that the
next trial could not meet; and when a worker
that has none left to start may leave (`await_places`: not while a dead worker's trial holds a
place that a retry should take).

Each rule is an Optuna callback, run after every trial; a rule that fires records its reason on
the study (`stop_reason`), so the summary, the dashboard note and a resumed pipeline can say
why the study ended where it did.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import optuna
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from vae_tune.record import StudyRecord
from vae_tune.studies.repair import awaited_trials, fail_stale, repair, to_retry, zombie_trials
from vae_tune.tracking.tracker import Tracker

# Trials that count towards --n-trials: an interrupted trial is retried (`repair.py`).
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
Callback = Callable[[optuna.Study, FrozenTrial], None]
Log = Callable[[str], None]
LINGER_POLL_S = 5.0  # how often a worker with no trial to start looks at the others' trials


def taken(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that hold a place in the n_trials budget: finished, or running in any worker."""
    return study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))


def surplus(trial: optuna.Trial, n_trials: int) -> bool:
    """Whether this just-started trial is beyond n_trials, counting every worker's finished
    and running trials: two workers asking at the same moment would both get one. The
    newest running trials yield, so exactly n_trials finish."""
    held = taken(trial.study)
    excess = len(held) - n_trials
    if excess <= 0:
        return False
    running = sorted(t.number for t in held if t.state == TrialState.RUNNING)
    return trial.number in running[-excess:]


def stop_when_taken(n_trials: int) -> Callback:
    """Stop this worker once finished plus running trials (of all workers) reach n_trials.
    Optuna's MaxTrialsCallback counts finished trials only, so parallel workers overshoot."""

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        if len(taken(study)) >= n_trials:
            study.stop()

    return callback


def patience_spent(study: optuna.Study, patience: int) -> str | None:
    """Why the study should stop for lack of progress, or None: the best value has not
    improved in the last `patience` finished trials."""
    finished = sorted(study.get_trials(deepcopy=False, states=FINISHED), key=lambda t: t.number)
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    best: FrozenTrial | None = None
    best_value = 0.0
    since = 0
    for trial in finished:
        since += 1
        value = trial.value
        if trial.state != TrialState.COMPLETE or value is None:
            continue
        if best is None or (value > best_value if maximize else value < best_value):
            best, best_value, since = trial, value, 0
    if since < patience:
        return None
    best_part = f"best: trial {best.number}" if best else "no trial complete"
    return f"patience: no new best in the last {since} finished trials ({best_part})"


def stop_on_patience(patience: int) -> Callback:
    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        reason = patience_spent(study, patience)
        if reason:
            StudyRecord(study).set_stop_reason(reason)
            study.stop()

    return callback


def target_reached(study: optuna.Study, target: float) -> str | None:
    """Why the study should stop at its target, or None: the first complete trial whose value
    reaches `target` in the metric's direction (a pruned trial's last epoch is no result)."""
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    for trial in sorted(complete, key=lambda t: t.number):
        value = trial.value
        if value is not None and (value >= target if maximize else value <= target):
            metric = StudyRecord(study).metric
            return (
                f"target: trial {trial.number} reached {metric} {value:.5g} (--target {target:g})"
            )
    return None


def stop_at_target(target: float) -> Callback:
    """Start no trial once one has reached the target; trials running elsewhere finish."""

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        reason = target_reached(study, target)
        if reason:
            record = StudyRecord(study)
            if record.stop_reason != reason:  # every worker sees it; one record is enough
                record.set_stop_reason(reason)
            study.stop()

    return callback


def stopped_already(
    study: optuna.Study,
    patience: int | None,
    target: float | None,
    deadline: float | None,
    pace: Pace,
    epochs: int,
) -> str | None:
    """A resumed study whose patience is spent, whose target is reached, or whose deadline
    leaves no room for a trial (never before its first complete trial: a deadline does not
    leave a study empty)."""
    if patience and (reason := patience_spent(study, patience)):
        return reason
    if target is not None and (reason := target_reached(study, target)):
        return reason
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if complete and deadline and not pace.fits(deadline, epochs):
        return "budget: no time left for a trial"
    return None


class Pace:
    """Seconds per epoch of this process's trials (setup and logging included), to tell
    whether one more trial fits before a deadline. Starts from a measured hint, if any."""

    def __init__(self, hint_s: float | None = None) -> None:
        self.hint_s = hint_s
        self.seconds = 0.0
        self.epochs = 0

    def add(self, seconds: float, epochs: int) -> None:
        self.seconds += seconds
        self.epochs += max(1, epochs)

    def add_trial(self, trial: FrozenTrial) -> None:
        if trial.datetime_start and trial.datetime_complete:
            seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
            self.add(seconds, len(trial.intermediate_values))

    def epoch_s(self) -> float | None:
        return self.seconds / self.epochs if self.epochs else self.hint_s

    def fits(self, deadline: float, epochs: int) -> bool:
        """Whether a full trial of `epochs` epochs started now would end by the deadline."""
        per_epoch = self.epoch_s()
        return per_epoch is None or time.time() + epochs * per_epoch <= deadline


def stop_before_deadline(deadline: float, epochs: int, pace: Pace) -> Callback:
    """Start no trial that could not run all its epochs before `deadline` (pruning may end
    it sooner; a full trial is the safe assumption)."""

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        pace.add_trial(trial)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if complete and not pace.fits(deadline, epochs):  # never stop without a result
            left = max(0.0, deadline - time.time())
            longest = epochs * (pace.epoch_s() or 0)
            reason = f"budget: a trial takes up to {longest:.0f} s, {left:.0f} s were left"
            StudyRecord(study).set_stop_reason(reason)
            study.stop()

    return callback


def await_places(
    study: optuna.Study, tracker: Tracker, n_trials: int, until: float, log: Log = print
) -> int:
    """How many more trials this process should run, once it has none left to start: 0 when
    the study has its n_trials finished, a stop rule fired, or no other trial holds a place.

    While other processes' trials hold the last places, this one stays: a worker that died
    (a SIGKILL, the out-of-memory killer, a lost node) would otherwise hold its place for
    ever, and the study end short with its parent run open. Every LINGER_POLL_S it repairs
    what it can see died (on this host at once, elsewhere once the heartbeat's grace period
    has passed) and, when that frees a place, returns to run the retry itself. It waits only
    for trials whose end it is sure to see (`awaited_trials`), and never past `until`."""
    poll = _poll_s(study)
    while True:
        if StudyRecord(study).stop_reason:  # patience or a deadline, here or in another worker
            return 0
        stale = fail_stale(study)
        if stale or zombie_trials(study) or to_retry(study):
            repairs = repair(study, tracker)
            repairs.stale = sorted({*stale, *repairs.stale})
            for line in repairs.lines():
                log(f"repaired: {line}")
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        if finished >= n_trials:
            return 0
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if waiting and len(taken(study)) < n_trials:  # a retry, enqueued here or elsewhere
            return n_trials - finished
        if not awaited_trials(study) or time.time() + poll >= until:
            return 0
        time.sleep(poll)


def _poll_s(study: optuna.Study) -> float:
    """How often a waiting worker looks: every LINGER_POLL_S, or every heartbeat if shorter
    (nothing can be judged stale faster than that)."""
    storage = study._storage
    interval = storage.get_heartbeat_interval() if isinstance(storage, BaseHeartbeat) else None
    return float(min(LINGER_POLL_S, interval)) if interval else LINGER_POLL_S
