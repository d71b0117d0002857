"""A trial's epoch metrics on their way to MLflow: buffered, each stamped with the time it
was logged at (as MLflow shows it), written a few at a time."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mlflow.entities import Metric

if TYPE_CHECKING:
    from vae_tune.tracking.tracker import Tracker

# A trial's epoch metrics reach the store at most this often (and when its run ends): an 11 s
# CPU epoch still shows at once, and sub-second epochs do not each wait on a write.
METRIC_FLUSH_S = 5.0


class MetricBuffer:
    """A run's metrics, written together every METRIC_FLUSH_S seconds; the rest when the run
    ends (`Tracker.end_run`). Each keeps the time it was logged at, as MLflow shows it."""

    def __init__(self, tracker: Tracker, run_id: str, every_s: float = METRIC_FLUSH_S) -> None:
        self.tracker, self.run_id, self.every_s = tracker, run_id, every_s
        self.pending: list[Metric] = []
        self.flushed = time.monotonic()

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.pending.extend(metric_entities(metrics, step))
        if time.monotonic() - self.flushed >= self.every_s:
            self.flush()

    def flush(self) -> None:
        self.tracker.log_batch(self.run_id, metrics=self.drain())

    def drain(self) -> list[Metric]:
        pending, self.pending = self.pending, []
        self.flushed = time.monotonic()
        return pending


def metric_entities(metrics: Mapping[str, float], step: int) -> list[Metric]:
    """The metrics at `step`, stamped with the time they were logged at."""
    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in metrics.items()]
