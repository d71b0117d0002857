"""`vae-tune submit`: a study or the pipeline as SLURM jobs (see `ops/cluster.py`)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vae_tune import render
from vae_tune.cli.app import (
    DEFAULT_DATASET,
    DataDirOpt,
    DatasetOpt,
    EncoderName,
    EncoderOpt,
    StudyNameOpt,
    app,
    run,
)
from vae_tune.errors import VaeTuneError

if TYPE_CHECKING:
    from vae_tune.ops.cluster import Job, Stores


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def submit(
    ctx: typer.Context,
    what: Annotated[str, typer.Argument(help="study (an array, then its promotion) or pipeline.")],
    stage: Annotated[str | None, typer.Argument(help="study: ae, vae, mlp or cnn.")] = None,
    storage: Annotated[
        str, typer.Option(help="The shared Optuna storage every task joins: postgresql://...")
    ] = "",
    tracking_uri: Annotated[
        str, typer.Option(help="The MLflow server every task logs to: http://HOST:PORT.")
    ] = "",
    tasks: Annotated[int, typer.Option(min=1, help="Array tasks per study.")] = 1,
    cpus_per_task: Annotated[
        int | None, typer.Option(min=1, help="sbatch --cpus-per-task.")
    ] = None,
    gpus_per_task: Annotated[
        int | None, typer.Option(min=0, help="sbatch --gpus-per-task.")
    ] = None,
    partition: Annotated[str | None, typer.Option(help="sbatch --partition.")] = None,
    time: Annotated[str | None, typer.Option(help="sbatch --time, e.g. 02:00:00.")] = None,
    account: Annotated[str | None, typer.Option(help="sbatch --account.")] = None,
    sbatch: Annotated[
        list[str] | None,
        typer.Option(help="Another sbatch option for every job, e.g. --sbatch=--mem=8G."),
    ] = None,
    study_name: StudyNameOpt = None,
    encoder: EncoderOpt = EncoderName.ae,
    dataset: DatasetOpt = DEFAULT_DATASET,
    data_dir: DataDirOpt = None,
    allow_local_stores: Annotated[
        bool, typer.Option(help="Accept stores on this machine's disk (a one-node cluster).")
    ] = False,
    dry_run: Annotated[bool, typer.Option(help="Write the batch scripts; submit nothing.")] = False,
) -> None:
    """Send a study (an array of tasks on one shared study, then its promotion) or the whole
    pipeline to SLURM. Options it does not know go to every `vae-tune study` command as they
    are (--n-trials 9 --train-size 5000 ...), checked as those commands will parse them before
    anything is queued. The batch scripts are written to slurm/."""
    from vae_tune.ops.cluster import Resources, Stores, check_stores, plan_jobs
    from vae_tune.ops.cluster import submit as submit_jobs

    def go() -> int:
        if not storage or not tracking_uri:
            raise VaeTuneError(
                "vae-tune submit needs --storage (a shared Optuna storage, postgresql://...) "
                "and --tracking-uri (an MLflow server, http://HOST:PORT)"
            )
        project = Path.cwd().resolve()
        common = ("--dataset", dataset, *(("--data-dir", str(data_dir)) if data_dir else ()))
        stores = Stores(storage, tracking_uri, common)
        # The optional STAGE takes the first word after WHAT, an option included (`submit
        # pipeline --n-trials 9`): an option there belongs with the study's other options.
        named, extra = stage, list(ctx.args)
        if stage is not None and stage.startswith("-"):
            named, extra = None, [stage, *extra]
        jobs = plan_jobs(what, named, encoder.value, extra, study_name)
        check_commands(jobs, stores)
        check_stores(project, stores, allow_local_stores)
        resources = Resources(
            tasks, cpus_per_task, gpus_per_task, partition, time, account, tuple(sbatch or ())
        )
        done = submit_jobs(project, jobs, resources, stores, dry_run=dry_run)
        rows = []
        for job, script, job_id in done.jobs:
            shape = f"{tasks} tasks" if job.array and tasks > 1 else "1 task"
            after = f"after {job.after}" if job.after else ""
            rows.append((job_id, job.name, shape, after, str(script.relative_to(project))))
        render.table(
            "submitted to SLURM" if not dry_run else "written, not submitted (--dry-run)",
            ("job", "name", "tasks", "runs", "batch script"),
            rows,
        )
        ids = ",".join(job_id for _, _, job_id in done.jobs)
        render.console.print(
            f"watch: squeue -j {ids}; logs in slurm/logs/; trials and runs: vae-tune ui "
            f"--storage {storage} --tracking-uri {tracking_uri}"
        )
        return 0

    run(go)


def check_commands(jobs: list[Job], stores: Stores) -> None:
    """Parse each job's command line as its command will on the cluster: an unknown option
    or a bad value is refused here, before anything waits in a queue to fail."""
    commands = typer.main.get_group(app).commands
    for job in jobs:
        name, *args = job.command
        try:
            commands[name].make_context(f"vae-tune {name}", [*args, *stores.options()])
        except typer.TyperException as exc:  # click's usage errors, as typer ships them
            why = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            raise VaeTuneError(
                f"vae-tune submit: the {job.name} job would fail on the cluster: "
                f"`vae-tune {shlex.join(job.command)}`: {why}"
            ) from None
