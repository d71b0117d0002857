"""`--workers N`: N processes on this machine join one study through its shared storage.

The parent prepares the study (resume checks, parent run, crash repair) so workers never race to
create it, then starts the workers with the CPU threads divided between them. Each worker loads
its own data and runs trials until the study holds `n_trials` finished ones. Ctrl-C or a kill of
the parent is forwarded once as SIGTERM, so every worker closes its running trial and run.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vae_tune.progress import PlainProgress
from vae_tune.repair import repair
from vae_tune.study import (
    FINISHED,
    Log,
    StudySummary,
    close_study,
    join_study,
    open_study,
    run_settings,
)
from vae_tune.study import run_trials as run_trials_here

if TYPE_CHECKING:  # runner imports this module
    from vae_tune.runner import StudyRequest, StudySetup

JOIN_TIMEOUT_S = 120  # a worker closing its trial after SIGTERM; then it is killed


def run_workers(
    request: StudyRequest,
    root: Path,
    setup: StudySetup,
    setup_fn: Callable[[StudyRequest, Path, Log], StudySetup],
    log: Log,
) -> StudySummary:
    """Prepare the study here, run it in `request.workers` processes, then close it."""
    space, task, tracker, options = setup.space, setup.task, setup.tracker, setup.options
    opened = open_study(space, run_settings(space, task, options), setup.storage, tracker,
                        options, log)  # fmt: skip
    threads = threads_per_worker(request.workers)
    finished = len(opened.study.get_trials(deepcopy=False, states=FINISHED))
    log(
        f"study {options.study_name}: {finished} trials finished, {request.workers} workers "
        f"({threads} torch threads each) run up to {max(0, options.n_trials - finished)} more"
    )
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    workers = [
        context.Process(
            target=_worker_main,
            args=(setup_fn, request, root, index, threads),
            name=f"vae-tune-worker-{index}",
        )
        for index in range(1, request.workers + 1)
    ]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join()
    except KeyboardInterrupt:
        _stop(workers)
        tracker.end_run(opened.parent_run_id, "KILLED", {"vae_tune.interrupted": "true"})
        raise
    failed = {w.name: w.exitcode for w in workers if w.exitcode != 0}
    if failed:
        log(f"workers that did not end cleanly (exit codes): {failed}")
    for line in repair(opened.study, tracker).lines():  # a worker killed with SIGKILL
        log(f"repaired: {line}")
    return close_study(opened, tracker)


def threads_per_worker(workers: int) -> int:
    """The cores this process may use, shared out: oversubscribed threads slow every worker."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // workers)


def _stop(workers: list[multiprocessing.Process]) -> None:
    for worker in workers:
        if worker.is_alive() and worker.pid:
            os.kill(worker.pid, signal.SIGTERM)
    for worker in workers:
        worker.join(JOIN_TIMEOUT_S)
        if worker.is_alive():
            worker.kill()


def _worker_main(
    setup_fn: Callable[[StudyRequest, Path, Log], StudySetup],
    request: StudyRequest,
    root: Path,
    index: int,
    threads: int,
) -> None:
    # Ctrl-C reaches the whole process group; only the parent acts on it and forwards one
    # SIGTERM, so a second Ctrl-C cannot cut a worker's cleanup short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    torch.set_num_threads(threads)
    for name in ("optuna", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    prefix = f"[worker {index}] "

    def log(line: str) -> None:
        print(f"{prefix}{line}", flush=True)

    try:
        setup = setup_fn(request, root, log)
        opened = join_study(setup.space, setup.storage, setup.options, worker=index)
        progress = PlainProgress(log)
        run_trials_here(opened, setup.space, setup.task, setup.tracker, setup.options, progress,
                        log, workers=request.workers)  # fmt: skip
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # reported by the parent through the exit code
        print(f"{prefix}error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
