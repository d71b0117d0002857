"""The user-facing errors: each carries one readable message and becomes exit code 2 in the CLI."""

from __future__ import annotations


class VaeTuneError(Exception):
    """An error caused by the user's input or environment, shown without a traceback."""


class ConfigError(VaeTuneError):
    """A bad value for one dotted config key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class SpaceError(VaeTuneError):
    """A malformed search-space file; the message names the file and the key."""

    def __init__(self, source: str, key: str, message: str) -> None:
        super().__init__(f"{source}: {key}: {message}")
        self.source = source
        self.key = key


class DataError(VaeTuneError):
    """A dataset that cannot be found, downloaded or read."""


class StoreError(VaeTuneError):
    """An Optuna storage or MLflow tracking store that cannot be opened."""


class StudyMismatchError(VaeTuneError):
    """Resuming a study with a search space or settings other than the ones it started with."""
