"""vae-tune: hyperparameter-optimization studies for autoencoders, VAEs and their classifier
heads, with every trial tracked in MLflow. The command line is a shell over these functions::

    import vae_tune as vt

    result = vt.study("ae", n_trials=12, epochs=5)      # silent: log=print prints
    result.trials                                       # a DataFrame, one row per trial
    vt.promote("ae")                                    # tested once, registered
    model = vt.load_champion("ae")                      # a torch module

Every option is an explicit, typed keyword with the CLI's name and default; errors raise
`VaeTuneError` subclasses. `vae_tune.api` holds the other commands' functions (report,
status, trials, export, doctor, datasets, ui, submit, ...).

Nothing heavy happens on import: each name loads its module (torch, Optuna, MLflow) on first
use (PEP 562), so `import vae_tune` and `vae-tune --help` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vae_tune.api import (
        Comparison,
        Curve,
        EpochUpdate,
        Exported,
        Finding,
        NoTrialCompletedError,
        PipelineResult,
        Project,
        Promotion,
        SearchSpace,
        StudyResult,
        VaeTuneError,
        compare,
        curve,
        doctor,
        export,
        images,
        load_champion,
        pipeline,
        promote,
        report,
        status,
        study,
        submit,
        trials,
        ui,
    )

__version__ = "0.5.0"

__all__ = [
    "Comparison",
    "Curve",
    "EpochUpdate",
    "Exported",
    "Finding",
    "NoTrialCompletedError",
    "PipelineResult",
    "Project",
    "Promotion",
    "SearchSpace",
    "StudyResult",
    "VaeTuneError",
    "__version__",
    "compare",
    "curve",
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


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from vae_tune import api

    value = api.load(name)
    globals()[name] = value  # once: later lookups find it without coming back here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
