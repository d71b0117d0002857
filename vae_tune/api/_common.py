"""What every public function shares: the project a call means, the log it writes to (none by
default: a script or a notebook runs without a terminal), and names normalised as studies
store them. Light on purpose: `vae_tune.api` is imported by the CLI before any command runs."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vae_tune.project.folder import Project

Log = Callable[[str], None]
DEFAULT_DATASET = "fashion-mnist"
ProjectLike = Project | str | os.PathLike[str] | None


def silent(line: str) -> None:
    """The log of a quiet call: lines are dropped, results are returned."""


def log_of(log: Log | None) -> Log:
    return silent if log is None else log


def open_project(
    project: ProjectLike,
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    device: str | None = None,
    host: str | None = None,
    dashboard_port: int | None = None,
    mlflow_port: int | None = None,
) -> Project:
    """A Project from a Project, a folder or None (the current folder), with the stores and
    device a call names replacing the project's own (None leaves them as they are)."""
    if project is None:
        found = Project(Path.cwd())
    elif isinstance(project, Project):
        found = project
    else:
        found = Project(Path(project))
    given: dict[str, Any] = {
        "storage": storage,
        "tracking_uri": tracking_uri,
        # "auto" is every call's default: it must not undo a device the Project was made with.
        "device": None if device == "auto" else device,
        "host": host,
        "dashboard_port": dashboard_port,
        "mlflow_port": mlflow_port,
    }
    changes = {k: v for k, v in given.items() if v is not None}
    return dataclasses.replace(found, **changes) if changes else found


def dataset_name(value: str) -> str:
    """`folder:PATH` and `npz:PATH` with PATH made absolute, as studies store it: the same
    dataset whatever folder a later call runs in."""
    kind, sep, path = value.partition(":")
    if sep and kind in ("folder", "npz") and path:
        return f"{kind}:{Path(path).expanduser().resolve()}"
    return value


def optional_path(value: str | os.PathLike[str] | None) -> Path | None:
    return None if value is None else Path(value)
