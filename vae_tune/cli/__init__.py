"""The command line: options in, a use case called, its result shown, an exit code out.
No ML logic and no rendering live here (see `usecases/` and `cli/render.py`)."""

from vae_tune.cli import cluster, studies, views  # noqa: F401  (they register their commands)
from vae_tune.cli.app import app, main

__all__ = ["app", "main"]
