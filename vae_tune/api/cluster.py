"""`submit`: a study (an array of tasks on one shared study, then its promotion) or the whole
pipeline as SLURM jobs. The jobs and their batch scripts are `ops/cluster.py`'s."""

import os
from collections.abc import Callable, Sequence

from vae_tune.api._common import DEFAULT_DATASET, ProjectLike, dataset_name, open_project
from vae_tune.errors import VaeTuneError
from vae_tune.ops.cluster import Job, Resources, Stores, Submitted, check_stores, plan_jobs
from vae_tune.ops.cluster import submit as submit_jobs

__all__ = ["Job", "Stores", "Submitted", "submit"]

CheckJobs = Callable[[Sequence[Job], Stores], None]


def submit(
    what: str,
    stage: str | None = None,
    *,
    storage: str,
    tracking_uri: str,
    tasks: int = 1,
    cpus_per_task: int | None = None,
    gpus_per_task: int | None = None,
    partition: str | None = None,
    time: str | None = None,
    account: str | None = None,
    sbatch: Sequence[str] = (),
    study_name: str | None = None,
    encoder: str = "ae",
    dataset: str = DEFAULT_DATASET,
    data_dir: str | os.PathLike[str] | None = None,
    allow_local_stores: bool = False,
    dry_run: bool = False,
    study_options: Sequence[str] = (),
    check: CheckJobs | None = None,
    project: ProjectLike = None,
) -> Submitted:
    """Send ``what`` (``"study"`` with its ``stage``, or ``"pipeline"``) to SLURM; the batch
    scripts go to the project's slurm/ folder (written, not submitted, with ``dry_run``).

    Args:
        storage: the shared Optuna storage every task joins (``postgresql://...``).
        tracking_uri: the MLflow server every task logs to (``http://HOST:PORT``).
        tasks: array tasks per study; cpus_per_task, gpus_per_task, partition, time, account:
            sbatch's options; sbatch: other sbatch options for every job, verbatim.
        study_options: options for every study task as the cluster's ``vae-tune study`` takes
            them (``["--n-trials", "9"]``), passed through as they are.
        check: called with the jobs and stores before anything is written or queued (the CLI
            parses each job's command line there).
        allow_local_stores: accept stores on this machine's disk (a one-node cluster).
    """
    if not storage or not tracking_uri:
        raise VaeTuneError(
            "vae-tune submit needs --storage (a shared Optuna storage, postgresql://...) "
            "and --tracking-uri (an MLflow server, http://HOST:PORT)"
        )
    if tasks < 1:
        raise VaeTuneError(f"tasks={tasks!r}: must be 1 or more")
    root = open_project(project).root.resolve()
    data = ("--data-dir", str(data_dir)) if data_dir else ()
    stores = Stores(storage, tracking_uri, ("--dataset", dataset_name(dataset), *data))
    jobs = plan_jobs(what, stage, encoder, list(study_options), study_name)
    if check is not None:
        check(jobs, stores)
    check_stores(root, stores, allow_local_stores)
    resources = Resources(
        tasks, cpus_per_task, gpus_per_task, partition, time, account, tuple(sbatch)
    )
    return submit_jobs(root, jobs, resources, stores, dry_run=dry_run)
