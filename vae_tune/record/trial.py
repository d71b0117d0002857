"""TrialRecord: what a trial keeps in Optuna (its worker, seed, MLflow run, best epoch, why it
was pruned or failed), typed. Part of the study record: the only code that touches user_attrs."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial


class TrialRecord:
    """Typed access to what a trial keeps; a finished trial is written through the storage."""

    def __init__(self, trial: optuna.Trial | FrozenTrial, storage: BaseStorage | None = None):
        self.trial = trial
        self.storage = storage

    def _get(self, key: str, default: Any = None) -> Any:
        return self.trial.user_attrs.get(key, default)

    def _stored(self, key: str) -> Any:
        """As the storage holds it now: a live trial's own attributes are a cached copy, and
        another process (the supervisor of --trial-timeout) may have written since."""
        if isinstance(self.trial, optuna.Trial):
            return self.trial.study._storage.get_trial_user_attrs(self.trial._trial_id).get(key)
        return self._get(key)

    def _set(self, key: str, value: Any) -> None:
        if isinstance(self.trial, optuna.Trial):
            self.trial.set_user_attr(key, value)
        else:  # another process's trial (crash repair): only the storage can write it
            assert self.storage is not None
            self.storage.set_trial_user_attr(self.trial._trial_id, key, value)

    @property
    def worker(self) -> dict[str, Any] | None:
        return self._get("worker")

    def set_worker(self, identity: dict[str, Any]) -> None:
        self._set("worker", identity)

    @property
    def seed(self) -> int:
        return int(self._get("seed"))

    def set_seed(self, seed: int) -> None:
        self._set("seed", seed)

    @property
    def precision(self) -> str | None:
        """The precision the trial trained in (`train.precision: auto` decided on its device)."""
        return self._get("precision")

    def set_precision(self, precision: str) -> None:
        self._set("precision", precision)

    @property
    def run_id(self) -> str | None:
        return self._get("mlflow_run_id")

    def set_run_id(self, run_id: str) -> None:
        self._set("mlflow_run_id", run_id)

    @property
    def best_epoch(self) -> int:
        """The epoch whose value the trial reported; its last reported one if not recorded."""
        best = self._get("best_epoch")
        if best:
            return int(best)
        assert isinstance(self.trial, FrozenTrial)
        return int(max(self.trial.intermediate_values))

    def set_best_epoch(self, epoch: int) -> None:
        self._set("best_epoch", epoch)

    @property
    def pruned_at_epoch(self) -> int | None:
        return self._get("pruned_at_epoch")

    @property
    def prune_reason(self) -> str | None:
        return self._get("prune_reason")

    def set_pruned(self, epoch: int, reason: str) -> None:
        self._set("pruned_at_epoch", epoch)
        self._set("prune_reason", reason)

    @property
    def fail_reason(self) -> str | None:
        return self._get("fail_reason")

    def set_failed(
        self, reason: str, interrupted: bool = False, oom_batch: int | None = None
    ) -> str:
        """`interrupted`: not the config's fault (Ctrl-C, a dead worker): it runs again.
        `oom_batch`: it ran out of memory at this batch size: it runs again at half of it.
        A trial already timed out keeps that reason: whatever its worker says as it is
        stopped (an interrupt, its death) is the time-out's doing, not a reason to retry.
        Returns the reason that stands, for the trial's MLflow run to say the same."""
        if self._stored("timed_out_after_s") is not None:
            return str(self._stored("fail_reason") or reason)
        self._set("fail_reason", reason)
        if interrupted:
            self._set("interrupted", True)
        if oom_batch is not None:
            self._set("oom_batch_size", oom_batch)
        return reason

    @property
    def timed_out_after_s(self) -> float | None:
        """Seconds after which the trial was stopped by --trial-timeout, if it was."""
        return self._stored("timed_out_after_s")

    def set_timed_out(self, seconds: float) -> str:
        """Record the time-out before the worker is stopped, so nothing takes the trial for
        an infrastructure failure and retries it; the reason written."""
        reason = f"timed out after {seconds:g} s (--trial-timeout)"
        self._set("timed_out_after_s", seconds)
        self._set("fail_reason", reason)
        return reason

    @property
    def warm_start(self) -> dict[str, Any] | None:
        """Where a warm-started trial's configuration came from: study, storage, trial."""
        return self._get("warm_start")

    @staticmethod
    def warm_start_attrs(study: str, storage: str, trial: int) -> dict[str, Any]:
        """The user attributes a warm-start configuration is enqueued with."""
        return {"warm_start": {"study": study, "storage": storage, "trial": trial}}

    def warm_start_tags(self) -> dict[str, Any]:
        """The same, as tags of the trial's MLflow run."""
        source = self.warm_start or {}
        return {f"vae_tune.warm_start.{key}": value for key, value in source.items()}

    @property
    def batch_size(self) -> int | None:
        """The batch size a retry after an out-of-memory runs at, instead of its config's."""
        value = self._get("batch_size")
        return int(value) if value is not None else None

    def as_run(self, flat: dict[str, Any]) -> dict[str, Any]:
        """The trial's sampled config with what its record overrides (a retry's batch size):
        what it trains at, in its study and in every replay."""
        if (batch := self.batch_size) is not None:
            flat["train.batch_size"] = batch
        return flat

    @property
    def needs_retry(self) -> bool:
        """Failed without being judged: interrupted, or failed by Optuna's heartbeat (which
        leaves no reason) after its worker vanished."""
        if self.timed_out_after_s is not None:
            return False
        return bool(self._get("interrupted")) or self._get("fail_reason") is None

    @property
    def retry_of(self) -> int | None:
        return self._get("retry_of")

    def retry_attrs(self) -> dict[str, Any]:
        """The user attributes this failed trial's retry is enqueued with: which trial it
        retries and, after an out-of-memory, half the batch size that did not fit."""
        attrs: dict[str, Any] = {"retry_of": self.trial.number}
        oom_batch = self._get("oom_batch_size")
        if oom_batch is not None:
            attrs["batch_size"] = max(1, int(oom_batch) // 2)
        return attrs
