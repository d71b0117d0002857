"""Test-only: makes one trial hang the way no interrupt can stop, in a `vae-tune` subprocess.

Put on PYTHONPATH by tests/test_trial_timeout.py (never installed, never imported by vae-tune):
Python imports `sitecustomize` at start-up, in the CLI process and in every spawned worker. The
first trial to start training, in any of them, claims the marker file named by
VAE_TUNE_TEST_HANG (created exclusively: one trial in all), writes its pid there, blocks every
signal it can (`pthread_sigmask`) and sleeps: a deadlock that SIGTERM, SIGINT and SIGUSR1 cannot
reach. Only a kill ends it. With VAE_TUNE_TEST_HANG_SIGNALS=reach it sleeps with its signals left
as they are: a slow trial (a stuck read) that an interrupt can still stop. The product code is
the same as a user's.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

MARKER = os.environ.get("VAE_TUNE_TEST_HANG")
REACHABLE = os.environ.get("VAE_TUNE_TEST_HANG_SIGNALS") == "reach"


def _hang_once(fit: Callable[..., Any]) -> Callable[..., Any]:
    def fit_or_hang(*args: Any, **kwargs: Any) -> Any:
        assert MARKER is not None
        try:
            fd = os.open(MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return fit(*args, **kwargs)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        if not REACHABLE:
            signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        time.sleep(3600)
        return fit(*args, **kwargs)

    return fit_or_hang


class _Hook(importlib.abc.MetaPathFinder):
    """Wraps `fit` in vae_tune.studies.objective as that module is loaded."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != "vae_tune.studies.objective":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.loader is not None
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            module.fit = _hang_once(module.fit)  # type: ignore[attr-defined]

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if MARKER:
    sys.meta_path.insert(0, _Hook())
