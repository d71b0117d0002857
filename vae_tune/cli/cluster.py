"""`vae-tune submit`: a study or the pipeline as SLURM jobs (`vae_tune.api.submit`), each
job's command line parsed here first, as the cluster's `vae-tune` will parse it."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from vae_tune import api
from vae_tune.cli import render
from vae_tune.cli.app import (
    DEFAULT_DATASET,
    DataDirOpt,
    DatasetOpt,
    EncoderName,
    EncoderOpt,
    StudyNameOpt,
    app,
    keywords,
    run,
)
from vae_tune.errors import VaeTuneError

if TYPE_CHECKING:
    from vae_tune.api import Job, Stores


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
    options = keywords(locals())
    del options["ctx"]
    # The optional STAGE takes the first word after WHAT, an option included (`submit
    # pipeline --n-trials 9`): an option there belongs with the study's other options.
    extra = list(ctx.args)
    if stage is not None and stage.startswith("-"):
        options["stage"], extra = None, [stage, *extra]
    options["sbatch"] = tuple(sbatch or ())

    def go() -> int:
        done = api.submit(**options, study_options=extra, check=check_commands)
        render.submitted(done, tasks, dry_run)
        render.console.print(
            f"watch: squeue -j {','.join(job_id for _, _, job_id in done.jobs)}; logs in "
            f"slurm/logs/; trials and runs: vae-tune ui --storage {storage} --tracking-uri "
            f"{tracking_uri}"
        )
        return 0

    run(go)


def check_commands(jobs: Sequence[Job], stores: Stores) -> None:
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
