"""A project folder and where everything of it lives: the study storage, the MLflow store and
its artifacts, the search spaces, cached encoders, reports, server logs, and the device.

Defaults resolve against the folder (`studies/optuna.journal`, `sqlite:///mlflow.db` with
artifacts in `mlartifacts/` beside it, `search_spaces/STAGE.yaml`), and a store given as a URL
is used as it is; another SQLite database keeps its artifacts in a folder of its own. Nothing
is created until a store is opened for writing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vae_tune.errors import VaeTuneError

if TYPE_CHECKING:  # loaded when a store is opened: `vae-tune ui` needs neither
    import torch
    from optuna.storages import BaseStorage

    from vae_tune.tracking.tracker import Tracker

SQLITE = "sqlite:///"
DEFAULT_DATABASE = "mlflow.db"


@dataclass(frozen=True)
class Project:
    root: Path
    storage: str | None = None  # a journal file or an Optuna storage URL, as typed
    tracking_uri: str | None = None  # an MLflow tracking URI, as typed
    device: str = "auto"
    host: str = "127.0.0.1"  # where `vae-tune ui` serves: the links point there
    dashboard_port: int = field(default_factory=lambda: _port("DASHBOARD", 8080))
    mlflow_port: int = field(default_factory=lambda: _port("MLFLOW", 5000))

    @property
    def storage_location(self) -> str:
        return self.storage or str(self.root / "studies" / "optuna.journal")

    @property
    def tracking(self) -> str:
        return self.tracking_uri or f"{SQLITE}{(self.root / DEFAULT_DATABASE).resolve()}"

    @property
    def artifact_root(self) -> Path | None:
        """Where a local SQLite store's new experiments keep their artifacts (see
        `artifact_root_of`); None for a server, which keeps its own."""
        if self.tracking.startswith(SQLITE):
            return artifact_root_of(Path(self.tracking.removeprefix(SQLITE)))
        return None

    @property
    def has_storage(self) -> bool:
        return "://" in self.storage_location or Path(self.storage_location).is_file()

    @property
    def has_tracking_store(self) -> bool:
        uri = self.tracking
        return not uri.startswith(SQLITE) or Path(uri.removeprefix(SQLITE)).is_file()

    def open_storage(self, write: bool = False) -> BaseStorage:
        from vae_tune.project.storage import open_storage

        return open_storage(self.storage_location, write=write)

    def tracker(self) -> Tracker:
        from vae_tune.tracking.tracker import Tracker

        return Tracker(self.tracking, artifact_root=self.artifact_root, ui_url=self.mlflow_url)

    def open_stores(self, write: bool = False) -> tuple[BaseStorage, Tracker]:
        """The Optuna storage and the MLflow tracker."""
        return self.open_storage(write), self.tracker()

    @property
    def mlflow_url(self) -> str:
        """The MLflow UI: the tracking server itself, or `vae-tune ui`'s local one."""
        if self.tracking.startswith(("http://", "https://")):
            return self.tracking.rstrip("/")
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.host}:{self.dashboard_port}"

    def space_path(self, stage: str) -> Path:
        """`search_spaces/STAGE.yaml` here, else the one shipped beside the package."""
        local = self.root / "search_spaces" / f"{stage}.yaml"
        if local.is_file():
            return local
        return Path(__file__).resolve().parents[2] / "search_spaces" / f"{stage}.yaml"

    @property
    def encoder_cache(self) -> Path:
        return self.root / "studies" / "encoders"

    @property
    def artifacts(self) -> Path:
        """optuna-dashboard's artifact store: the pictures its trial pages show."""
        return self.root / "studies" / "artifacts"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def logs(self) -> Path:
        return self.root / "studies" / "logs"

    def shown(self, path: str | Path) -> str:
        """A path relative to the project folder when inside it (shorter commands to copy);
        a URL exactly as it is."""
        text = str(path)
        if "://" in text:
            return text
        try:
            return str(Path(text).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return text

    def dashboard_command(self) -> str:
        return f"optuna-dashboard {self.shown(self.storage_location)}"

    def mlflow_command(self) -> str:
        if not self.tracking.startswith(SQLITE):
            return f"open {self.tracking} in a browser"
        db = self.shown(self.tracking.removeprefix(SQLITE))
        return f"mlflow ui --backend-store-uri {SQLITE}{db} --default-artifact-root " + self.shown(
            str(self.artifact_root)
        )

    def torch_device(self) -> torch.device:
        return resolve_device(self.device)


def artifact_root_of(database: Path) -> Path:
    """The artifact folder of one SQLite store, beside it: `mlartifacts/` for the default
    `mlflow.db` (the folder `mlflow ui` itself uses, and where existing projects keep their
    artifacts), `mlartifacts-NAME/` for any other database file NAME. Two databases in one
    folder have different file names, so their experiments never share a folder: a study of
    the same name in each would otherwise write both stores' runs into one, and one store's
    cleanup could not tell its runs from the other's. The full file name, not its stem:
    `a.db` and `a.sqlite` are two stores. Experiments keep the location they were created
    with, so older experiments of another database stay where they are."""
    database = database.resolve()
    if database.name == DEFAULT_DATABASE:
        return database.parent / "mlartifacts"
    return database.parent / f"mlartifacts-{database.name}"


def _port(server: str, default: int) -> int:
    """A UI's port. Stable defaults (8080, 5000), so the links notes and runs carry keep
    working from one session to the next; where those are taken, VAE_TUNE_DASHBOARD_PORT and
    VAE_TUNE_MLFLOW_PORT move both the links and the servers. Read when a project is made."""
    value = os.environ.get(f"VAE_TUNE_{server}_PORT", str(default))
    try:
        return int(value)
    except ValueError:
        raise VaeTuneError(f"VAE_TUNE_{server}_PORT={value!r} is not a port number") from None


def resolve_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise VaeTuneError(f"--device: {exc}") from exc
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise VaeTuneError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= count:
            raise VaeTuneError(
                f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to "
                f"cuda:{count - 1}"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise VaeTuneError(f"--device {name}: MPS (Apple silicon) is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise VaeTuneError(f"--device {name}: choose auto, cpu, cuda, cuda:N or mps")
    return device
