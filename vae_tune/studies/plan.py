"""A study request resolved once, in one place, into the frozen plan that every layer below reads.

`plan_study` applies the options in their one order (command line > space file > default,
`space/options.py`), fixes the data's `auto` values into the space, finds a head's encoder,
loads the data and opens the stores. What it returns, a `StudyPlan`, is all a process needs to
run trials: nothing below it reads the request or resolves an option again. The order is
deliberate: the search space is validated first, then the stores are opened, then
the encoder is found (a head study's), and only then is data loaded. Worker processes import
this module and plan the same study for themselves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from optuna.storages import BaseStorage

from vae_tune.data.defaults import data_defaults, describe
from vae_tune.data.splits import load_splits
from vae_tune.errors import VaeTuneError
from vae_tune.evaluation.latents import PROBE
from vae_tune.evaluation.tasks import Task
from vae_tune.project.folder import Project
from vae_tune.space.extras import located
from vae_tune.space.options import CommandLine, RunOptions, resolve
from vae_tune.space.spaces import SearchSpace, load_space
from vae_tune.space.stages import stage
from vae_tune.studies.encoders import refuse_fine_tuning, resolve_encoder
from vae_tune.studies.lifecycle import StudyOptions
from vae_tune.tracking.tracker import Tracker

Log = Callable[[str], None]
WORKER_BYTES = int(1.5 * 2**30)


@dataclass(frozen=True)
class StudyRequest:
    """A study as the user asked for it; None where an option was left out."""

    stage: str
    n_trials: int | None = None  # None: the space file's study.n_trials, else 12
    timeout: float | None = None
    epochs: int | None = None
    study_name: str | None = None
    space: Path | SearchSpace | None = None  # a file, or a space already loaded (the API's)
    dataset: str = "fashion-mnist"
    data_dir: Path | None = None
    train_size: int | None = None
    val_size: int = 12_000
    seed: int | None = None  # None: the space file's sampler seed, else 0
    sampler: str | None = None
    pruner: str | None = None
    force: bool = False
    encoder: str = "ae"  # a head study: the stage whose encoder the head is trained on
    encoder_study: str | None = None  # that stage's study [default: ENCODER-DATASET]
    workers: int = 1  # processes on this machine joining the study
    workers_per_device: int | None = None  # CUDA: that many workers on each device, not spread
    patience: int | None = None  # stop after this many finished trials without a new best
    deadline: float | None = None  # time.time() after which no trial may end (the pipeline's)
    epoch_s_hint: float | None = None  # a measured epoch time, until the study measures its own
    objective: str | None = None  # elbo, probe, elbo,probe: overrides the space's metric
    allow_pickle: bool = False  # a head study may unpickle its registered encoder (0.1's)
    warm_start: str | None = None  # NAME or STORAGE::NAME, comma-separated (extras.py)
    trial_timeout: str | float | None = None  # seconds, or 90s, 10m, 1.5h
    target: float | None = None  # stop starting trials once a complete trial reaches it

    @property
    def name(self) -> str:
        return self.study_name or stage(self.stage).study_name(self.dataset, self.encoder)

    def command_line(self) -> CommandLine:
        return CommandLine(
            seed=self.seed,
            n_trials=self.n_trials,
            epochs=self.epochs,
            sampler=self.sampler,
            pruner=self.pruner,
            patience=self.patience,
            objective=self.objective,
            warm_start=self.warm_start,
            trial_timeout=self.trial_timeout,
            target=self.target,
        )


@dataclass(frozen=True)
class StudyPlan:
    """The request resolved: the space with the command line and the data's own values fixed,
    the stores, the task (data, encoder) and the options every trial runs with."""

    space: SearchSpace
    storage: BaseStorage
    tracker: Tracker
    task: Task
    options: StudyOptions


def plan_study(request: StudyRequest, project: Project, log: Log) -> StudyPlan:
    """Validate the space and the device, find the encoder, load the data, open the stores:
    a bad option or file is refused before anything is written."""
    space, run = load_request_space(request, project)
    sources = located(run.extras.warm_start, request.name, project.storage_location)
    device = project.torch_device()
    wanted = stage(request.stage)
    encoder, stores = None, None
    if wanted.needs_encoder:  # before the data: a missing encoder study is reported first
        name = request.encoder_study or stage(request.encoder).study_name(request.dataset)
        if not project.has_storage:  # a fresh project: said without creating its stores
            raise VaeTuneError(
                f"no study {name!r} in the storage: run `vae-tune study {request.encoder}` first"
            )
        stores = project.open_stores(write=True)
        storage, tracker = stores
        split = {"dataset": request.dataset, "val_size": request.val_size, "seed": run.seed}
        encoder = resolve_encoder(
            name,
            storage,
            tracker,
            project.encoder_cache,
            split=split,
            data_dir=request.data_dir,
            device=device,
            log=log,
            allow_pickle=request.allow_pickle,
        )
        refuse_fine_tuning(space, encoder[0])
    log(f"loading {request.dataset} on {device}")
    splits = load_splits(
        request.dataset,
        request.data_dir,
        val_size=request.val_size,
        train_size=request.train_size,
        seed=run.seed,
        device=device,
    )
    if not splits.labelled and (wanted.needs_labels or PROBE in space.settings.metrics):
        raise VaeTuneError(
            f"{request.dataset} has no labels (no class folders): the {wanted.name} stage and "
            "the probe objective need them; ae and vae studies learn from it as it is"
        )
    # The data's own `auto` values, stored with the study as fixed values.
    chosen = data_defaults(space.fixed, splits)
    space = space.with_fixed(chosen)
    log(describe(splits, chosen))
    storage, tracker = stores or project.open_stores(write=True)
    options = StudyOptions(
        study_name=request.name,
        n_trials=run.n_trials,
        timeout=request.timeout,
        seed=run.seed,
        device=device,
        force=request.force,
        patience=run.patience,
        deadline=request.deadline,
        epoch_s_hint=request.epoch_s_hint,
        artifact_dir=project.artifacts,
        dashboard_url=project.dashboard_url,
        extras=dataclasses.replace(run.extras, warm_start=sources),
    )
    return StudyPlan(space, storage, tracker, wanted.make_task(splits, encoder), options)


def check_workers(workers: int) -> None:
    """Refuse more workers than this machine's memory holds: each is a process with its own
    torch, data and models (peak RSS ~1.5 GiB each, measured on Fashion-MNIST). Asked once, by
    the process that starts them, before any of them has loaded its data."""
    available = available_memory()
    if workers <= 1 or available is None:
        return
    most = max(1, int(available // WORKER_BYTES))
    if workers > most:
        raise VaeTuneError(
            f"--workers {workers}: each worker takes about {WORKER_BYTES / 2**30:.1f} GiB, and "
            f"this machine has {available / 2**30:.1f} GiB available: use at most {most}"
        )


def available_memory() -> int | None:
    """Bytes the kernel could give a new process (Linux's MemAvailable: free memory and the
    page cache it can drop); None where that cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def load_request_space(request: StudyRequest, project: Project) -> tuple[SearchSpace, RunOptions]:
    """The validated space with the command line applied, and the resolved run options."""
    given = request.space
    if isinstance(given, SearchSpace):
        space = given
    else:
        space = load_space(given or project.space_path(request.stage))
    if space.stage != request.stage:
        raise VaeTuneError(
            f"{space.source} is a search space for {space.stage!r}, not {request.stage!r}"
        )
    return resolve(request.command_line(), space)
