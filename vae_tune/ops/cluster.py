"""`vae-tune submit`: a study, or the whole pipeline, sent to SLURM.

SLURM's own `sbatch`, not a library: the batch scripts are what a cluster user reads, edits and
resubmits, so they are written into the project (`slurm/`) and submitted as they are. A study
is a job array of `vae-tune study` processes on one shared study (the trial budget, the parent
run and the retries belong to the study: `studies/lifecycle.py`), then `vae-tune promote` as a
job that runs after the whole array (`afterany`: a task cancelled or preempted does not cancel the
promotion; the other tasks finish the budget). `pipeline` chains the encoder's array and
promotion, then the head's.

What cannot work on a cluster is refused before anything is submitted: stores on one
machine's own disk (a journal, SQLite or the project folder outside a shared filesystem), and
an MLflow store that is not a server. `--allow-local-stores` accepts them on a one-node
cluster.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vae_tune.errors import VaeTuneError

# Filesystems every node of a cluster sees the same (types as /proc/mounts names them).
SHARED_FILESYSTEMS = {
    "nfs",
    "nfs4",
    "lustre",
    "gpfs",
    "beegfs",
    "ceph",
    "cephfs",
    "cifs",
    "smb3",
    "glusterfs",
    "fuse.glusterfs",
    "fuse.sshfs",
    "fuse.ceph",
    "wekafs",
    "panfs",
    "orangefs",
    "pvfs2",
}
TIMEOUT_VARIABLE = "VAE_TUNE_SBATCH_TIMEOUT"
DEFAULT_SBATCH_TIMEOUT_S = 120.0
PREEMPT_WARNING_S = 60  # SIGTERM this long before the time limit: the trial closes cleanly


@dataclass(frozen=True)
class Resources:
    """What each task asks SLURM for; `sbatch` lines given verbatim (`--sbatch=--mem=8G`)."""

    tasks: int = 1
    cpus_per_task: int | None = None
    gpus_per_task: int | None = None
    partition: str | None = None
    time: str | None = None
    account: str | None = None
    sbatch: tuple[str, ...] = ()

    def directives(self, array: bool) -> list[str]:
        lines = [f"--array=0-{self.tasks - 1}"] if array and self.tasks > 1 else []
        for option, value in (
            ("--cpus-per-task", self.cpus_per_task),
            # A promotion retrains one model: one GPU where the array's tasks had some.
            ("--gpus-per-task", self.gpus_per_task if array else self.gpus_per_task and 1),
            ("--partition", self.partition),
            ("--time", self.time),
            ("--account", self.account),
        ):
            if value is not None:
                lines.append(f"{option}={shlex.quote(str(value))}")
        return [*lines, f"--signal=B:TERM@{PREEMPT_WARNING_S}", *self.sbatch]


@dataclass(frozen=True)
class Stores:
    """Where the tasks meet: the study storage, the tracking server, the data."""

    storage: str
    tracking_uri: str
    common: tuple[str, ...] = ()  # --dataset, --data-dir: every command's

    def options(self) -> list[str]:
        return ["--storage", self.storage, "--tracking-uri", self.tracking_uri, *self.common]


@dataclass(frozen=True)
class Job:
    name: str  # study-ae, promote-ae, ...
    command: list[str]  # the vae-tune command line, after `vae-tune`
    array: bool  # a job array of Resources.tasks tasks
    after: str | None = None  # the job it waits for (by name)


@dataclass
class Submitted:
    folder: Path
    jobs: list[tuple[Job, Path, str]] = field(default_factory=list)  # job, script, SLURM id


def plan_jobs(
    what: str,
    stage: str | None,
    encoder: str,
    study_args: Sequence[str],
    study_name: str | None = None,
) -> list[Job]:
    """The jobs `vae-tune submit study STAGE` or `vae-tune submit pipeline` sends."""
    from vae_tune.space.stages import STAGES

    extra = list(study_args)
    if what == "study":
        valid = ", ".join(STAGES)
        if stage is None:
            raise VaeTuneError(f"vae-tune submit study STAGE: name the stage ({valid})")
        # Refused here, not on the cluster: a queued array of a stage that does not exist
        # would fail in every task, after waiting in the queue.
        if stage not in STAGES:
            raise VaeTuneError(
                f"vae-tune submit study {stage}: no such stage; choose one of {valid}"
            )
        both = ["--encoder", encoder] if stage == "mlp" else []
        both += ["--study-name", study_name] if study_name else []
        return [
            Job(f"study-{stage}", ["study", stage, *both, *extra], array=True),
            Job(f"promote-{stage}", ["promote", stage, *both], False, f"study-{stage}"),
        ]
    if what == "pipeline":
        if stage is not None or study_name is not None:
            raise VaeTuneError(
                "vae-tune submit pipeline takes no stage and no --study-name: its studies are "
                "named STAGE-DATASET"
            )
        head = ["--encoder", encoder]
        return [
            Job(f"study-{encoder}", ["study", encoder, *extra], array=True),
            Job(f"promote-{encoder}", ["promote", encoder], False, f"study-{encoder}"),
            Job("study-mlp", ["study", "mlp", *head, *extra], True, f"promote-{encoder}"),
            Job("promote-mlp", ["promote", "mlp", *head], False, "study-mlp"),
        ]
    raise VaeTuneError(f"vae-tune submit {what!r}: submit a 'study' or the 'pipeline'")


def check_stores(project: Path, stores: Stores, allow_local: bool) -> None:
    """Refuse stores that the cluster's nodes cannot share, naming the option."""
    if allow_local:
        return
    hint = "put it on a shared filesystem, or --allow-local-stores on a one-node cluster"
    where = _local_path(stores.storage)
    if where is not None and not shared(where):
        raise VaeTuneError(
            f"--storage {stores.storage}: {where} is on this machine's own disk "
            f"({filesystem_type(where)}); the tasks of a cluster need a PostgreSQL URL "
            f"(postgresql://...) or {hint}"
        )
    if not stores.tracking_uri.startswith(("http://", "https://", "databricks")):
        raise VaeTuneError(
            f"--tracking-uri {stores.tracking_uri}: the tasks of a cluster log to an MLflow "
            "server (mlflow server ..., then --tracking-uri http://HOST:PORT); a SQLite or "
            "file store on one machine's disk cannot be shared"
        )
    if not shared(project):
        raise VaeTuneError(
            f"the project folder {project} is on this machine's own disk "
            f"({filesystem_type(project)}): every task runs in it; {hint}"
        )


def submit(
    project: Path,
    jobs: list[Job],
    resources: Resources,
    stores: Stores,
    dry_run: bool = False,
) -> Submitted:
    """Write each job's batch script into `project/slurm/` and submit it (unless `dry_run`)."""
    if not dry_run and shutil.which("sbatch") is None:
        raise VaeTuneError("sbatch not found: vae-tune submit needs SLURM's commands on PATH")
    folder = project / "slurm"
    made = [p for p in (folder, folder / "logs") if not p.exists()]
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    done = Submitted(folder)
    ids: dict[str, str] = {}
    for job in jobs:
        script = folder / f"{job.name}-{stamp}.sbatch"
        script.write_text(batch_script(project, job, resources, stores))
        command = ["sbatch", "--parsable"]
        if job.after is not None:
            command.append(f"--dependency=afterany:{ids[job.after]}")
        command.append(str(script))
        try:
            job_id = "(dry run)" if dry_run else _sbatch(command, job.name)
        except VaeTuneError as exc:
            # sbatch has read the script if it queued the job: a script of a job that was
            # not queued would only mislead whoever resubmits from slurm/.
            script.unlink(missing_ok=True)
            if not ids:
                for path in reversed(made):
                    with contextlib.suppress(OSError):
                        path.rmdir()  # only if empty: nothing of anyone else's goes
                raise
            queued = ", ".join(f"{name} {job_id}" for name, job_id in ids.items())
            raise VaeTuneError(
                f"{exc}; already queued: {queued} (`scancel {' '.join(ids.values())}` to cancel "
                "them, or submit the rest again)"
            ) from None
        ids[job.name] = job_id
        done.jobs.append((job, script, job_id))
    return done


def batch_script(project: Path, job: Job, resources: Resources, stores: Stores) -> str:
    """A script that runs one vae-tune command in the project, as the submitting shell would."""
    executable = Path(sys.executable).parent / "vae-tune"
    lines = [
        "#!/bin/bash",
        f"# Written by vae-tune submit; resubmit with: sbatch {job.name}-....sbatch",
        f"#SBATCH --job-name=vae-tune-{job.name}",
        # Quoted as sbatch reads its #SBATCH lines (quotes and backslashes as a shell's): a
        # project path with spaces is one path; `%` in it is a literal, not a SLURM pattern.
        "#SBATCH --output="
        + shlex.quote(f"{str(project).replace('%', '%%')}/slurm/logs/%x-%A_%a.out"),
        *(f"#SBATCH {line}" for line in resources.directives(job.array)),
        "set -euo pipefail",
        f"cd {shlex.quote(str(project))}",
        "export PYTHONUNBUFFERED=1",
    ]
    if os.environ.get("VAE_TUNE_DATA"):
        lines.append(f"export VAE_TUNE_DATA={shlex.quote(os.environ['VAE_TUNE_DATA'])}")
    # exec: SLURM's SIGTERM (scancel, preemption, the time limit) reaches vae-tune itself.
    command = [str(executable), *job.command, *stores.options()]
    lines.append("exec " + " ".join(shlex.quote(part) for part in command))
    return "\n".join(lines) + "\n"


def filesystem_type(path: Path) -> str:
    """The type of the filesystem `path` lies on, from /proc/mounts (longest mount point)."""
    target = str(path.resolve())
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, parts[2]
    return kind


def shared(path: Path) -> bool:
    return filesystem_type(path) in SHARED_FILESYSTEMS


def slurm_cpus() -> int | None:
    """The CPUs SLURM gave this task, when it runs in one."""
    value = os.environ.get("SLURM_CPUS_PER_TASK")
    return int(value) if value and value.isdigit() else None


def _local_path(storage: str) -> Path | None:
    if storage.startswith("sqlite:///"):
        return Path(storage.removeprefix("sqlite:///")).parent
    if "://" in storage:
        return None  # a database server: every node reaches it
    return Path(storage).resolve().parent


def sbatch_timeout() -> float:
    """Seconds to wait for `sbatch` to answer: `$VAE_TUNE_SBATCH_TIMEOUT` (read when asked),
    else 120 (a busy controller can take a minute; one that is down never answers)."""
    value = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not value:
        return DEFAULT_SBATCH_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise VaeTuneError(f"{TIMEOUT_VARIABLE}={value}: give the seconds to wait, e.g. 120")
    return seconds


def _sbatch(command: list[str], name: str) -> str:
    wait = sbatch_timeout()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=wait)
    except subprocess.TimeoutExpired:
        raise VaeTuneError(
            f"sbatch did not answer in {wait:g} s ({TIMEOUT_VARIABLE}) while submitting "
            f"{name}: the SLURM controller is down or busy; `squeue --me` shows whether "
            f"{name} was queued all the same"
        ) from None
    except OSError as exc:
        raise VaeTuneError(f"{command[0]}: cannot run it ({exc.strerror or exc})") from None
    if done.returncode != 0:
        raise VaeTuneError(f"{' '.join(command)} failed: {done.stderr.strip() or done.stdout}")
    return done.stdout.strip().split(";")[0]
