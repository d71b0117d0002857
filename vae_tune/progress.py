"""Progress of a running study: a live bar per trial in a terminal, plain lines elsewhere.

Both show each epoch's value, the trial's and the study's best, and an ETA from the epoch budget
that is left (remaining trials x epochs, at the mean epoch time so far): an upper bound, since
pruning stops trials early.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

Log = Callable[[str], None]


@dataclass
class EpochUpdate:
    trial: int
    epoch: int
    epochs: int
    metric: str
    value: float
    trial_best: float
    study_best: str  # "-" before the first complete trial


class _Budget:
    """Epochs left in this process's share of the study, and the time they should take (no
    later than a deadline, when the study has one)."""

    def __init__(self, trials: int, epochs: int, deadline: float | None = None) -> None:
        self.left = trials * epochs
        self.epochs = epochs
        self.done = 0
        self.started = time.perf_counter()
        self.deadline = deadline

    def epoch_done(self) -> None:
        self.done += 1
        self.left = max(0, self.left - 1)

    def trial_ended(self, epochs_run: int) -> None:
        self.left = max(0, self.left - (self.epochs - epochs_run))  # pruned: its budget is saved

    def eta(self) -> str:
        if not self.done:
            return "ETA -"
        seconds = (time.perf_counter() - self.started) / self.done * self.left
        if self.deadline is not None:
            seconds = min(seconds, max(0.0, self.deadline - time.time()))
        return f"ETA {clock(seconds)}"


class PlainProgress:
    """One line per epoch and per finished trial, for logs, pipes and CI."""

    def __init__(self, log: Log, prefix: str = "") -> None:
        self.log, self.prefix = log, prefix
        self.budget = _Budget(0, 1)

    def begin(self, trials: int, epochs: int, deadline: float | None = None) -> None:
        self.budget = _Budget(trials, epochs, deadline)

    def trial_started(self, trial: int) -> None:
        pass

    def epoch(self, update: EpochUpdate, seconds: float) -> None:
        self.budget.epoch_done()
        self.log(
            f"{self.prefix}  trial {update.trial} epoch {update.epoch}/{update.epochs} "
            f"{update.metric} {update.value:.5g} | trial best {update.trial_best:.5g} | "
            f"study best {update.study_best} | {seconds:.1f} s | {self.budget.eta()}"
        )

    def trial_ended(self, trial: int, epochs_run: int, line: str) -> None:
        self.budget.trial_ended(epochs_run)
        self.log(f"{self.prefix}{line}")

    def close(self) -> None:
        pass


class LiveProgress:
    """A study bar with the ETA and a bar for the running trial, redrawn in place (rich)."""

    def __init__(self, console: Console) -> None:
        self.bars = Progress(
            TextColumn("{task.description:>9}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=True,  # finished trials stay as printed lines; the bars go at the end
        )
        self.budget = _Budget(0, 1)
        self.study_bar: TaskID | None = None
        self.trial_bars: dict[int, TaskID] = {}

    def begin(self, trials: int, epochs: int, deadline: float | None = None) -> None:
        self.budget = _Budget(trials, epochs, deadline)
        self.bars.start()
        self.study_bar = self.bars.add_task("trials", total=trials, info=self.budget.eta())

    def trial_started(self, trial: int) -> None:
        self.trial_bars[trial] = self.bars.add_task(
            f"trial {trial}", total=self.budget.epochs, info="first epoch ..."
        )

    def epoch(self, update: EpochUpdate, seconds: float) -> None:
        self.budget.epoch_done()
        info = (
            f"{update.metric} {update.value:.5g} | trial best {update.trial_best:.5g} | "
            f"study best {update.study_best} | {seconds:.1f} s/epoch"
        )
        self.bars.update(self.trial_bars[update.trial], completed=update.epoch, info=info)
        self._update_study()

    def trial_ended(self, trial: int, epochs_run: int, line: str) -> None:
        self.budget.trial_ended(epochs_run)
        bar = self.trial_bars.pop(trial, None)
        if bar is not None:
            self.bars.remove_task(bar)
        self.bars.console.print(line)
        if self.study_bar is not None:
            self.bars.advance(self.study_bar)
        self._update_study()

    def _update_study(self) -> None:
        if self.study_bar is not None:
            self.bars.update(self.study_bar, info=self.budget.eta())

    def close(self) -> None:
        self.bars.stop()


StudyProgress = PlainProgress | LiveProgress


def clock(seconds: float) -> str:
    """A duration as minutes:seconds (`12:05`), as ETAs and budgets are shown."""
    seconds = round(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"
