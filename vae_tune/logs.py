"""The libraries' own log lines, kept out of vae-tune's output: one place for every process
(the command, its worker processes, the benchmarks)."""

from __future__ import annotations

import logging
import os

# Optuna's logger for each trial that ends: vae-tune tells every failed trial itself (its
# reason in both stores and one line), so Optuna's own warning, traceback included, is noise.
OPTUNA_TRIALS = "optuna.study._optimize"


class _NoTrialFailures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Trial ") and " failed with " in message)


def quiet_libraries() -> None:
    """Optuna's, MLflow's and Alembic's info lines, Optuna's warning and traceback for each
    failed trial, MLflow's artifact progress bars (they garble logs) and its warning about
    pickled models (only old registered versions are)."""
    for name in ("optuna", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    trials = logging.getLogger(OPTUNA_TRIALS)
    if not any(isinstance(f, _NoTrialFailures) for f in trials.filters):
        trials.addFilter(_NoTrialFailures())
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
