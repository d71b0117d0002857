"""What a study keeps, as plain dataclasses: its settings, promotions, curves and test reads.
Stored as JSON in the study's user attributes by `StudyRecord`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vae_tune.evaluation.tasks import Lineage


@dataclass(frozen=True)
class Settings:
    """What must stay the same for the trials of one study to be comparable."""

    stage: str
    dataset: str
    train_size: int
    val_size: int
    seed: int
    fixed: dict[str, Any]
    encoder: Lineage = field(default_factory=dict)
    # A dataset without a test split of its own: the share held out as one (data.HOLDOUT).
    holdout: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """As the storage keeps it (tuples become lists), so stored and current compare."""
        raw = dataclasses.asdict(self)
        raw["fixed"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.fixed.items()}
        for optional in ("encoder", "holdout"):  # studies stored before them compare equal
            if not raw[optional]:
                del raw[optional]
        return raw

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Settings:
        return cls(
            **{
                **raw,
                "fixed": dict(raw["fixed"]),
                "encoder": dict(raw.get("encoder", {})),
                "holdout": dict(raw.get("holdout", {})),
            }
        )

    @property
    def split(self) -> dict[str, Any]:
        """The facts that decide which images are training, validation and test images."""
        split = {"dataset": self.dataset, "val_size": self.val_size, "seed": self.seed}
        return {**split, "holdout": self.holdout} if self.holdout else split


@dataclass(frozen=True)
class PromotionRecord:
    """One promoted trial: its test metrics (read once), run and registered version."""

    run_id: str
    model_name: str
    model_version: str
    test: dict[str, float]
    test_reads: int = 1
    per_class_f1: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)
    density: dict[str, dict[str, float]] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)  # the model.* keys of its config
    members: int = 1  # models whose class probabilities the model averages
    mirrored: bool = False  # the model averages each image with its mirror
    retrained: bool = True  # on train + validation; False: the trials' own models
    member_trials: list[int] = field(default_factory=list)  # not retrained: whose models


@dataclass(frozen=True)
class TestRead:
    """One read of a study's sealed test split, recorded before the split is loaded."""

    when: str  # UTC, ISO 8601
    trial: int
    command: str  # promote, curve
    why: str  # promotion, re-promotion, curve
    host: str = ""


@dataclass(frozen=True)
class CurveRecord:
    run_id: str
    evaluation: str
    rows: list[dict[str, Any]]
    epochs: int
    test_reads: int
