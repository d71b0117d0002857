"""The libraries' own log lines, kept out of vae-tune's output: one place for every process
(the command, its worker processes, the benchmarks)."""

from __future__ import annotations

import logging
import os


def quiet_libraries() -> None:
    """Optuna's, MLflow's and Alembic's info lines, MLflow's artifact progress bars (they
    garble logs) and its warning about pickled models (only old registered versions are)."""
    for name in ("optuna", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
