"""`--workers N`: N processes on this machine join one study through its shared storage.

The parent prepares the study (resume checks, parent run, crash repair) so workers never race to
create it, then starts the workers with the CPU threads divided between them. Each worker loads
its own data, waits for the others, and runs trials until the study holds `n_trials` finished
ones. Ctrl-C or a kill of
the parent is forwarded once as SIGTERM, so every worker closes its running trial and run.
With --trial-timeout the parent also watches the trials (`studies/timeouts.py`) and replaces a
worker it had to kill; one worker runs this way too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Barrier
from typing import Any

import optuna
import torch

from vae_tune.logs import quiet_libraries
from vae_tune.progress import PlainProgress
from vae_tune.project.folder import Project
from vae_tune.record import StudyRecord
from vae_tune.studies.lifecycle import (
    StudySummary,
    close_study,
    join_study,
    open_study,
    study_settings,
)
from vae_tune.studies.lifecycle import run_trials as run_trials_here
from vae_tune.studies.plan import Log, StudyPlan, StudyRequest, plan_study
from vae_tune.studies.repair import repair
from vae_tune.studies.stopping import FINISHED
from vae_tune.studies.timeouts import POLL_S, Supervisor, install

JOIN_TIMEOUT_S = 120  # a worker closing its trial after SIGTERM; then it is killed
READY_TIMEOUT_S = 300  # the slowest worker's data and encoder loading


def run_workers(request: StudyRequest, project: Project, plan: StudyPlan, log: Log) -> StudySummary:
    """Prepare the study here, run it in `request.workers` processes, then close it."""
    space, task, tracker, options = plan.space, plan.task, plan.tracker, plan.options
    settings = study_settings(space, task, options)
    opened = open_study(space, settings, plan.storage, tracker, options, log)
    threads = threads_per_worker(request.workers)
    finished = len(opened.study.get_trials(deepcopy=False, states=FINISHED))
    log(
        f"study {options.study_name}: {finished} trials finished, {request.workers} workers "
        f"({threads} torch threads each) run up to {max(0, options.n_trials - finished)} more"
    )
    devices = assign_devices(request.workers, gpus_for(project), request.workers_per_device)
    if any(devices):
        log(f"workers on CUDA devices {', '.join(str(d) for d in devices)}")
        project = dataclasses.replace(project, device="cuda")  # each sees its own as cuda:0
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    ready = context.Barrier(request.workers)
    wanted: dict[BaseProcess, Any] = {}  # each worker: the trial its supervisor times out
    placed: dict[BaseProcess, str | None] = {}  # each worker: its CUDA device

    def launch(
        index: int, barrier: Barrier | None, device: str | None, asked: StudyRequest
    ) -> None:
        value = context.Value("i", -1)
        worker = context.Process(
            target=_worker_main,
            args=(asked, project, index, threads, barrier, value),
            name=f"vae-tune-worker-{index}",
        )
        with _visible_device(device):  # a spawned worker starts with this environment
            worker.start()
        wanted[worker], placed[worker] = value, device

    for index, device in enumerate(devices, start=1):
        launch(index, ready, device, request)
    killed: list[BaseProcess] = []
    try:
        if options.extras.trial_timeout is None:
            for worker in list(wanted):
                worker.join()
        else:  # trials past their time-out are stopped, and killed workers replaced
            supervisor = Supervisor(opened.study, tracker, options.extras.trial_timeout, log)
            started, index = time.monotonic(), request.workers
            while any(w.is_alive() for w in wanted):
                time.sleep(POLL_S)
                for worker in supervisor.check(wanted):
                    killed.append(worker)
                    asked = _replacement(request, opened.study, options.n_trials, started)
                    if asked is not None:
                        index += 1
                        log(f"starting worker {index} in place of {worker.name}")
                        launch(index, None, placed[worker], asked)
    except KeyboardInterrupt:
        _stop(list(wanted))
        tracker.end_run(opened.parent_run_id, "KILLED", {"vae_tune.interrupted": "true"})
        raise
    failed = {w.name: w.exitcode for w in wanted if w.exitcode != 0 and w not in killed}
    if failed:
        log(f"workers that did not end cleanly (exit codes): {failed}")
    for line in repair(opened.study, tracker).lines():  # a worker killed with SIGKILL
        log(f"repaired: {line}")
    return close_study(opened, tracker, log)


def _replacement(
    request: StudyRequest, study: optuna.Study, n_trials: int, started: float
) -> StudyRequest | None:
    """The request a worker that replaces a killed one runs, or None when the study wants no
    more trials: its budget finished, a stop rule fired, or its --timeout spent (which the
    replacement keeps: what is left of it, not a fresh one)."""
    if len(study.get_trials(deepcopy=False, states=FINISHED)) >= n_trials:
        return None
    if StudyRecord(study).stop_reason:
        return None
    if request.timeout is None:
        return request
    left = request.timeout - (time.monotonic() - started)
    return dataclasses.replace(request, timeout=left) if left >= 1 else None


def gpus_for(project: Project) -> list[str]:
    """The CUDA devices workers may be spread over: those visible to this process, when the
    study runs on CUDA without naming one device (`--device cuda:N` keeps every worker there)."""
    if project.device not in ("auto", "cuda") or not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def assign_devices(
    workers: int, devices: Sequence[str], per_device: int | None = None
) -> list[str | None]:
    """Each worker's device: spread one by one over the devices, or `per_device` workers on
    each before the next (`--workers-per-device`); none without devices."""
    if not devices:
        return [None] * workers
    step = per_device or 1
    return [devices[(i // step) % len(devices)] for i in range(workers)]


@contextlib.contextmanager
def _visible_device(device: str | None) -> Iterator[None]:
    if device is None:
        yield
        return
    old = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = device
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES")
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = old


def threads_per_worker(workers: int) -> int:
    """The cores this process may use, shared out: oversubscribed threads slow every worker."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // workers)


def _stop(workers: Sequence[BaseProcess]) -> None:
    for worker in workers:
        if worker.is_alive() and worker.pid:
            os.kill(worker.pid, signal.SIGTERM)
    for worker in workers:
        worker.join(JOIN_TIMEOUT_S)
        if worker.is_alive():
            worker.kill()


def _worker_main(
    request: StudyRequest,
    project: Project,
    index: int,
    threads: int,
    ready: Barrier | None,
    wanted: Any,
) -> None:
    # Ctrl-C reaches the whole process group; only the parent acts on it and forwards one
    # SIGTERM, so a second Ctrl-C cannot cut a worker's cleanup short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    install(wanted)  # SIGUSR1 from the supervisor: this worker's trial ran past its time-out
    torch.set_num_threads(threads)
    quiet_libraries()
    prefix = f"[worker {index}] "

    def log(line: str) -> None:
        print(f"{prefix}{line}", flush=True)

    try:
        plan = plan_study(request, project, log)
        opened = join_study(plan.space, plan.storage, plan.options)
        # Every worker starts trials once all have loaded: the first one ready would otherwise
        # take the start-up trials alone, sampled one after another instead of side by side.
        with contextlib.suppress(threading.BrokenBarrierError):  # a worker that died: go on
            if ready is not None:  # a replacement starts at once
                ready.wait(timeout=READY_TIMEOUT_S)
        progress = PlainProgress(log)
        run_trials_here(
            opened,
            plan.space,
            plan.task,
            plan.tracker,
            plan.options,
            progress,
            log,
            workers=request.workers,
        )
    except KeyboardInterrupt:
        if ready is not None:
            ready.abort()  # the others need not wait for this one
        sys.exit(130)
    except Exception as exc:  # reported by the parent through the exit code
        if ready is not None:
            ready.abort()
        print(f"{prefix}error: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
