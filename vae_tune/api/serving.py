"""`ui`: optuna-dashboard and the MLflow UI served on a project's stores. Apart from the other
views because the process that serves stays light: no torch, no Optuna, no MLflow imported
here, only the two servers it starts (see `ops/ui.py`)."""

from vae_tune.api._common import Log, ProjectLike, log_of, open_project
from vae_tune.errors import VaeTuneError
from vae_tune.logs import quiet_libraries
from vae_tune.ops.ui import serve


def ui(
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    mlflow_port: int | None = None,
    open: bool = False,
    storage: str | None = None,
    tracking_uri: str | None = None,
    project: ProjectLike = None,
    log: Log | None = None,
) -> None:
    """Serve optuna-dashboard (``port``, default ``$VAE_TUNE_DASHBOARD_PORT`` or 8080) and the
    MLflow UI (``mlflow_port``, default ``$VAE_TUNE_MLFLOW_PORT`` or 5000) on the project's
    stores until Ctrl-C; ``log`` receives each study's links. ``open`` opens a browser."""
    for name, value in (("port", port), ("mlflow_port", mlflow_port)):
        if value is not None and not 1 <= value <= 65535:
            raise VaeTuneError(f"{name}={value!r}: a port is from 1 to 65535")
    quiet_libraries()
    found = open_project(
        project,
        storage=storage,
        tracking_uri=tracking_uri,
        host=host,
        dashboard_port=port,
        mlflow_port=mlflow_port,
    )
    serve(found, open, log=log_of(log))
