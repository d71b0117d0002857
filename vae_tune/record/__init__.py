"""The study record: every fact vae-tune keeps in Optuna, typed, behind one package.

State that must outlive a process lives in the Optuna storage as user attributes: on the study
(its settings, the exact search-space text, its MLflow runs, promotions, curves, why it stopped)
and on each trial (its worker, seed, MLflow run, best epoch, why it was pruned or failed). This
package (StudyRecord here, TrialRecord in trial.py, the stored dataclasses in schema.py) is
the only code that reads or writes those keys, so the schema has one home.

Many processes write to one study, and Optuna's storages have no compare-and-set: writing a
list read a minute earlier would drop what another process appended meanwhile. So every fact
that accumulates (a test read, a promotion, a curve, a stop reason) is written under a key of
its own, `test_read:<id>`, `promotion:<trial>`, `curve:<trial>`, `stop_reason:<id>`; one key's
write is atomic in every storage, and readers gather the keys. (Studies written before 0.4 keep
one key for each list; their entries are read too.)
"""

from __future__ import annotations

import dataclasses
import socket
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.storages import BaseStorage
from optuna.study import StudySummary
from optuna.trial import FrozenTrial

from vae_tune.data.splits import Splits, load_splits
from vae_tune.errors import VaeTuneError
from vae_tune.models import contract
from vae_tune.models.config import TrialConfig
from vae_tune.record.schema import CurveRecord, PromotionRecord, Settings, TestRead
from vae_tune.record.trial import TrialRecord
from vae_tune.space.spaces import SearchSpace, parse_space

TEST_READ = "test_read:"
PROMOTION = "promotion:"
CURVE = "curve:"
STOP_REASON = "stop_reason:"
WARM_STARTED = "warm_started:"


class StudyRecord:
    """Typed access to what a study keeps. Works on a live study or a stored summary."""

    def __init__(self, study: optuna.Study | StudySummary) -> None:
        self.study = study
        self._attrs = study.user_attrs

    @classmethod
    def load(cls, name: str, storage: BaseStorage) -> StudyRecord:
        try:
            record = cls(optuna.load_study(study_name=name, storage=storage))
        except KeyError:
            raise VaeTuneError(
                f"no study {name!r} in the storage: run `vae-tune study` for it first"
            ) from None
        # The user's own study names the model its space named: that code may be imported to
        # rebuild it (a promotion, a head's encoder), as the space's own (models/contract.py).
        family = record.stored_settings.get("fixed", {}).get("model.family")
        if isinstance(family, str):
            contract.trust(family)
        return record

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

    @property
    def options(self) -> dict[str, str]:
        """The warm start, trial time-out and target its latest session ran with, as text."""
        return dict(self._attrs.get("options", {}))

    def record_options(self, shown: dict[str, str]) -> None:
        """Every process of a session writes the same options: the last write is theirs."""
        self._set("options", shown)

    @property
    def warm_started(self) -> dict[str, list[int]]:
        """The warm-start sources already enqueued, and their trials: never enqueued twice."""
        return {source: list(trials) for source, trials in self._keyed(WARM_STARTED).items()}

    def record_warm_start(self, source: str, trials: list[int]) -> None:
        self._set(f"{WARM_STARTED}{source}", trials)

    # How it ended.
    @property
    def stop_reason(self) -> str | None:
        """Why the study last stopped early; None once a later session ran trials again.

        A session that resumes writes which stops it has seen (`clears`), so a stop written by
        another process at the same moment is not lost with them. Of the stops left, the one
        written after the most trials is the latest: counted in trials, never by a clock (two
        machines' clocks disagree)."""
        stops = {key: (e["after_trials"], e["reason"]) for key, e in self._stop_events(True)}
        if self._attrs.get("stop_reason"):  # before 0.4
            stops["legacy"] = (-1, self._attrs["stop_reason"])
        for _, event in self._stop_events(False):
            for key in event["clears"]:
                stops.pop(key, None)
        return max(stops.values(), key=lambda stop: stop[0])[1] if stops else None

    def set_stop_reason(self, reason: str | None) -> None:
        """Record why the study stops now, or (None) that a session runs its trials again."""
        if reason is None:
            seen = [key for key, _ in self.refreshed()._stop_events(True)] + ["legacy"]
            self._set(f"{STOP_REASON}{_unique()}", {"reason": None, "clears": seen})
        else:
            after = len(self.live.get_trials(deepcopy=False))
            self._set(f"{STOP_REASON}{_unique()}", {"reason": reason, "after_trials": after})

    def _stop_events(self, stops: bool) -> list[tuple[str, dict[str, Any]]]:
        """The stops written (or, `stops` False, the resumptions), by key."""
        events = self._keyed(STOP_REASON).items()
        return [(key, e) for key, e in events if (e["reason"] is not None) == stops]

    # What was done with it afterwards.
    @property
    def promotions(self) -> dict[int, PromotionRecord]:
        raw = {**self._attrs.get("promotions", {}), **self._keyed(PROMOTION)}
        return {int(number): PromotionRecord(**record) for number, record in raw.items()}

    def record_promotion(self, trial: int, record: PromotionRecord) -> None:
        self._set(f"{PROMOTION}{trial}", dataclasses.asdict(record))

    @property
    def test_reads(self) -> list[TestRead]:
        """Every read of the study's test split, oldest first. A study from before 0.3 kept
        counts per promotion and curve only: those reads are listed without a time."""
        keyed = sorted(self._keyed(TEST_READ).values(), key=lambda r: (r["when"], r["host"]))
        if "test_reads" in self._attrs:  # 0.3: one list
            return [TestRead(**read) for read in [*self._attrs["test_reads"], *keyed]]
        earlier = [
            TestRead("before 0.3", int(trial), "promote", "promotion")
            for trial, promoted in self._attrs.get("promotions", {}).items()
            for _ in range(promoted.get("test_reads", 1))
        ]
        earlier += [
            TestRead("before 0.3", int(trial), "curve", "curve")
            for trial, curve in self._attrs.get("curves", {}).items()
            for _ in range(curve["test_reads"])
        ]
        return earlier + [TestRead(**read) for read in keyed]

    def record_test_read(self, trial: int, command: str, why: str) -> int:
        """Write down a read of the test split before it happens, under a key of its own; the
        study's count as the storage holds it right after (reads by other processes, at the
        same moment too, included)."""
        when = datetime.now(timezone.utc).isoformat(timespec="milliseconds")  # orders the reads
        read = TestRead(when, trial, command, why, socket.gethostname())
        self._set(f"{TEST_READ}{_unique()}", dataclasses.asdict(read))
        return len(self.test_reads)

    @property
    def curves(self) -> dict[int, CurveRecord]:
        raw = {**self._attrs.get("curves", {}), **self._keyed(CURVE)}
        return {int(number): CurveRecord(**record) for number, record in raw.items()}

    def record_curve(self, trial: int, record: CurveRecord) -> None:
        self._set(f"{CURVE}{trial}", dataclasses.asdict(record))

    def _keyed(self, prefix: str) -> dict[str, Any]:
        """The entries written under `prefix`, by what follows it."""
        return {k[len(prefix) :]: v for k, v in self._attrs.items() if k.startswith(prefix)}


def _unique() -> str:
    """A key no other process picks: a random id (hosts and pids repeat across machines)."""
    return uuid.uuid4().hex


__all__ = [
    "CurveRecord",
    "PromotionRecord",
    "Settings",
    "StudyRecord",
    "TestRead",
    "TrialRecord",
]
