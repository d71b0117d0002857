"""The study record: every fact vae-tune keeps in Optuna, typed, behind one package.

State that must outlive a process lives in the Optuna storage as user attributes: on the study
(its settings, the exact search-space text, its MLflow runs, promotions, curves, why it stopped)
and on each trial (its worker, seed, MLflow run, best epoch, why it was pruned or failed). This
package (StudyRecord here, TrialRecord in trial.py, the stored dataclasses in schema.py) is
the only code that reads or writes those keys, so the schema has one home.
"""

from __future__ import annotations

import dataclasses
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.storages import BaseStorage
from optuna.study import StudySummary
from optuna.trial import FrozenTrial

from vae_tune.config import TrialConfig
from vae_tune.data import Splits, load_splits
from vae_tune.errors import VaeTuneError
from vae_tune.record.schema import CurveRecord, PromotionRecord, Settings, TestRead
from vae_tune.record.trial import TrialRecord
from vae_tune.space import SearchSpace, parse_space


class StudyRecord:
    """Typed access to what a study keeps. Works on a live study or a stored summary."""

    def __init__(self, study: optuna.Study | StudySummary) -> None:
        self.study = study
        self._attrs = study.user_attrs

    @classmethod
    def load(cls, name: str, storage: BaseStorage) -> StudyRecord:
        try:
            return cls(optuna.load_study(study_name=name, storage=storage))
        except KeyError:
            raise VaeTuneError(
                f"no study {name!r} in the storage: run `vae-tune study` for it first"
            ) from None

    @property
    def live(self) -> optuna.Study:
        assert isinstance(self.study, optuna.Study), "a stored summary cannot be written"
        return self.study

    def _set(self, key: str, value: Any) -> None:
        self.live.set_user_attr(key, value)
        self._attrs = self.live.user_attrs

    def refreshed(self) -> StudyRecord:
        """The record as the storage holds it now (other processes write to it too)."""
        self._attrs = self.live.user_attrs
        return self

    # What the study ran with.
    @property
    def started(self) -> bool:
        return "search_space" in self._attrs

    @property
    def fully_started(self) -> bool:
        """Everything `record_start` writes is there ("metrics" is its last write): another
        process that started the study moments ago has finished recording it."""
        return "metrics" in self._attrs

    @property
    def settings(self) -> Settings:
        if "settings" not in self._attrs:
            raise VaeTuneError(f"study {self.study.study_name!r} was not made by vae-tune")
        return Settings.from_json(self._attrs["settings"])

    @property
    def stored_settings(self) -> dict[str, Any]:
        return dict(self._attrs.get("settings", {}))

    @property
    def space_text(self) -> str:
        return str(self._attrs["search_space"])

    @property
    def metric(self) -> str:
        """The study's metric: the first of its objectives'."""
        return str(self._attrs.get("metric", "?"))

    @property
    def metrics(self) -> list[str]:
        """One per objective (a study stored before multi-objective studies has its metric)."""
        return list(self._attrs.get("metrics", [self.metric]))

    def record_start(self, space: SearchSpace, settings: Settings) -> None:
        self._set("search_space", space.text)
        self._set("search_space_file", space.source)
        self._set("settings", settings.to_json())
        self._set("metric", space.settings.metric)
        self._set("metrics", list(space.settings.metrics))

    def space(self) -> SearchSpace:
        """The search space exactly as the study ran it: its text and its fixed values."""
        space = parse_space(self.space_text, f"study {self.study.study_name}")
        return space.with_fixed(self.settings.fixed)

    def replay(self, trial: FrozenTrial) -> TrialConfig:
        """A finished trial's config through the same path the study sampled it with, at the
        batch size and precision it ran at (a retry after an out-of-memory runs at half its
        batch; `train.precision: auto` is decided once, on the trial's device)."""
        space = self.space()
        ran = TrialRecord(trial)
        flat = ran.as_run(space.sample(optuna.trial.FixedTrial(trial.params)))
        if flat.get("train.precision") == "auto" and ran.precision is not None:
            flat["train.precision"] = ran.precision
        return space.config(flat)

    def splits(self, data_dir: Path | None, device: torch.device) -> Splits:
        """The train/validation split the study ran on."""
        s = self.settings
        return load_splits(
            s.dataset,
            data_dir,
            val_size=s.val_size,
            train_size=s.train_size,
            seed=s.seed,
            device=device,
            holdout=s.holdout or None,
        )

    # Its MLflow side.
    @property
    def experiment_id(self) -> str | None:
        return self._attrs.get("mlflow_experiment_id")

    @property
    def parent_run_id(self) -> str | None:
        return self._attrs.get("mlflow_parent_run_id")

    @property
    def creator(self) -> dict[str, Any] | None:
        """The vae-tune process that created the study (None: created otherwise, or before)."""
        return self._attrs.get("created_by")

    def set_creator(self, identity: dict[str, Any]) -> None:
        self._set("created_by", identity)

    def record_mlflow(self, experiment_id: str, parent_run_id: str, tracking_uri: str) -> None:
        self._set("mlflow_parent_run_id", parent_run_id)
        self._set("mlflow_experiment_id", experiment_id)
        self._set("mlflow_tracking_uri", tracking_uri)

    # How it ended.
    @property
    def stop_reason(self) -> str | None:
        return self._attrs.get("stop_reason")

    def set_stop_reason(self, reason: str | None) -> None:
        self._set("stop_reason", reason)

    # What was done with it afterwards.
    @property
    def promotions(self) -> dict[int, PromotionRecord]:
        raw = self._attrs.get("promotions", {})
        return {int(number): PromotionRecord(**record) for number, record in raw.items()}

    def record_promotion(self, trial: int, record: PromotionRecord) -> None:
        raw = dict(self._attrs.get("promotions", {}))
        raw[str(trial)] = dataclasses.asdict(record)
        self._set("promotions", raw)

    @property
    def test_reads(self) -> list[TestRead]:
        """Every read of the study's test split, oldest first. A study from before 0.3 kept
        counts per promotion and curve only: those reads are listed without a time."""
        if "test_reads" in self._attrs:
            return [TestRead(**read) for read in self._attrs["test_reads"]]
        earlier = [
            TestRead("before 0.3", trial, "promote", "promotion")
            for trial, promoted in self.promotions.items()
            for _ in range(promoted.test_reads)
        ]
        earlier += [
            TestRead("before 0.3", trial, "curve", "curve")
            for trial, curve in self.curves.items()
            for _ in range(curve.test_reads)
        ]
        return earlier

    def record_test_read(self, trial: int, command: str, why: str) -> int:
        """Write down a read of the test split before it happens; the study's count with it.
        (Two processes reading at the same moment could each append to the same list: the
        study's storage has no compare-and-set for attributes.)"""
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        read = TestRead(when, trial, command, why, socket.gethostname())
        reads = [*self.test_reads, read]
        self._set("test_reads", [dataclasses.asdict(r) for r in reads])
        return len(reads)

    @property
    def curves(self) -> dict[int, CurveRecord]:
        raw = self._attrs.get("curves", {})
        return {int(number): CurveRecord(**record) for number, record in raw.items()}

    def record_curve(self, trial: int, record: CurveRecord) -> None:
        raw = dict(self._attrs.get("curves", {}))
        raw[str(trial)] = dataclasses.asdict(record)
        self._set("curves", raw)


__all__ = [
    "CurveRecord",
    "PromotionRecord",
    "Settings",
    "StudyRecord",
    "TestRead",
    "TrialRecord",
]
