"""The use cases behind vae-tune's public face, one keyword-typed function each: what every
CLI command calls, and what a script or a notebook calls the same way.

Names load on first use (PEP 562): the CLI imports this package before parsing its options,
and `vae-tune --help` must not wait for torch, Optuna or MLflow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vae_tune.analysis.curve import Curve
    from vae_tune.api._common import Log, dataset_name
    from vae_tune.api.cluster import Job, Stores, Submitted, submit
    from vae_tune.api.images import images
    from vae_tune.api.promotion import curve, load_champion, promote
    from vae_tune.api.serving import ui
    from vae_tune.api.studies import NoTrialCompletedError, ProgressCallback, pipeline, study
    from vae_tune.api.views import (
        TRIAL_STATES,
        Comparison,
        DatasetInfo,
        Exported,
        compare,
        datasets,
        doctor,
        export,
        report,
        status,
        trials,
    )
    from vae_tune.errors import VaeTuneError
    from vae_tune.ops.doctor import Finding
    from vae_tune.progress import EpochUpdate
    from vae_tune.project.folder import Project
    from vae_tune.promotion.promote import Promotion
    from vae_tune.space.spaces import SearchSpace
    from vae_tune.usecases.pipeline import PipelineResult
    from vae_tune.usecases.runner import StudyResult

# Each public name and the module that defines it.
WHERE = {
    "study": "vae_tune.api.studies",
    "pipeline": "vae_tune.api.studies",
    "NoTrialCompletedError": "vae_tune.api.studies",
    "ProgressCallback": "vae_tune.api.studies",
    "promote": "vae_tune.api.promotion",
    "curve": "vae_tune.api.promotion",
    "load_champion": "vae_tune.api.promotion",
    "report": "vae_tune.api.views",
    "compare": "vae_tune.api.views",
    "status": "vae_tune.api.views",
    "trials": "vae_tune.api.views",
    "export": "vae_tune.api.views",
    "doctor": "vae_tune.api.views",
    "datasets": "vae_tune.api.views",
    "ui": "vae_tune.api.serving",
    "images": "vae_tune.api.images",
    "TRIAL_STATES": "vae_tune.api.views",
    "Comparison": "vae_tune.api.views",
    "Exported": "vae_tune.api.views",
    "DatasetInfo": "vae_tune.api.views",
    "submit": "vae_tune.api.cluster",
    "Job": "vae_tune.api.cluster",
    "Stores": "vae_tune.api.cluster",
    "Submitted": "vae_tune.api.cluster",
    "Log": "vae_tune.api._common",
    "dataset_name": "vae_tune.api._common",
    "Project": "vae_tune.project.folder",
    "SearchSpace": "vae_tune.space.spaces",
    "VaeTuneError": "vae_tune.errors",
    "StudyResult": "vae_tune.usecases.runner",
    "Promotion": "vae_tune.promotion.promote",
    "PipelineResult": "vae_tune.usecases.pipeline",
    "Curve": "vae_tune.analysis.curve",
    "Finding": "vae_tune.ops.doctor",
    "EpochUpdate": "vae_tune.progress",
}

__all__ = [
    "TRIAL_STATES",
    "Comparison",
    "Curve",
    "DatasetInfo",
    "EpochUpdate",
    "Exported",
    "Finding",
    "Job",
    "Log",
    "NoTrialCompletedError",
    "PipelineResult",
    "ProgressCallback",
    "Project",
    "Promotion",
    "SearchSpace",
    "Stores",
    "StudyResult",
    "Submitted",
    "VaeTuneError",
    "compare",
    "curve",
    "dataset_name",
    "datasets",
    "doctor",
    "export",
    "images",
    "load_champion",
    "pipeline",
    "promote",
    "report",
    "status",
    "study",
    "submit",
    "trials",
    "ui",
]


def load(name: str) -> Any:
    """The public object `name`, its module imported now."""
    return getattr(importlib.import_module(WHERE[name]), name)


def __getattr__(name: str) -> Any:
    if name not in WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = load(name)
    globals()[name] = value  # once: later lookups find it without coming back here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *WHERE})
