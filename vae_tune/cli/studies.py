"""The commands that train: study, pipeline, promote and curve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vae_tune import api
from vae_tune.cli import render
from vae_tune.cli.app import (
    DEFAULT_DATASET,
    DataDirOpt,
    DatasetOpt,
    DeviceOpt,
    EncoderName,
    EncoderOpt,
    SeedOpt,
    StageArg,
    StageName,
    StorageOpt,
    StudyNameOpt,
    TrackingOpt,
    TrainSizeOpt,
    ValSizeOpt,
    WorkersOpt,
    app,
    comma_integers,
    keywords,
    run,
)

# A registry is data, never code: unpickling a registered encoder is the user's explicit choice.
AllowPickleOpt = Annotated[
    bool,
    typer.Option(
        "--allow-pickle",
        help="A head's registered encoder may be a pickle (registered by vae-tune 0.1): "
        "unpickling runs the code it names, so only for a registry you trust.",
    ),
]


@app.command()
def study(
    stage: StageArg,
    n_trials: Annotated[
        int | None,
        typer.Option(
            "--n-trials",
            "-n",
            min=1,
            help="Finished trials wanted (default: the space's study.n_trials, else 12).",
        ),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(min=1, help="Stop starting new trials after this many seconds.")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Epochs per trial (overrides train.epochs).")
    ] = None,
    study_name: StudyNameOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    space: Annotated[
        Path | None, typer.Option(help="Search-space YAML (default: search_spaces/STAGE.yaml).")
    ] = None,
    dataset: DatasetOpt = DEFAULT_DATASET,
    data_dir: DataDirOpt = None,
    train_size: TrainSizeOpt = None,
    val_size: ValSizeOpt = 12_000,
    seed: SeedOpt = None,
    device: DeviceOpt = "auto",
    sampler: Annotated[
        str | None, typer.Option(help="Sampler name, overriding the space file.")
    ] = None,
    pruner: Annotated[
        str | None, typer.Option(help="Pruner name, overriding the space file.")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Resume even though the space or settings changed.")
    ] = False,
    encoder: EncoderOpt = EncoderName.ae,
    encoder_study: Annotated[
        str | None, typer.Option(help="mlp: the encoder's study (default: ENCODER-DATASET).")
    ] = None,
    workers: WorkersOpt = 1,
    workers_per_device: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="With several GPUs: this many workers on each device before the next "
            "(default: spread one by one).",
        ),
    ] = None,
    objective: Annotated[
        str | None,
        typer.Option(
            help="What the study optimises: elbo (vae) or loss (ae), probe (linear-probe "
            "accuracy on the latents), or both, comma-separated: a multi-objective study of "
            "their Pareto front, in which Optuna prunes nothing (every trial runs all its "
            "epochs; their curves are still logged)."
        ),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(
            min=1, help="Stop when the best value has not improved in this many finished trials."
        ),
    ] = None,
    allow_pickle: AllowPickleOpt = False,
    warm_start: Annotated[
        str | None,
        typer.Option(
            help="Studies whose best configurations are enqueued first, clipped to this space: "
            "NAME (this storage) or STORAGE::NAME, comma-separated (default: the space's "
            "study.warm_start)."
        ),
    ] = None,
    trial_timeout: Annotated[
        str | None,
        typer.Option(
            help="A trial running longer (seconds, or 90s, 10m, 1.5h) is interrupted, killed if "
            "it does not answer, failed and not retried (default: the space's "
            "study.trial_timeout)."
        ),
    ] = None,
    target: Annotated[
        float | None,
        typer.Option(
            help="Stop starting trials once a complete trial reaches this value of the metric, "
            "in its direction (default: the space's study.target)."
        ),
    ] = None,
) -> None:
    """Run (or resume) an Optuna study with pruning; every trial is an MLflow run."""
    options = keywords(locals())

    def go() -> int:
        # A live bar per trial in a terminal; plain lines in logs, pipes and CI.
        try:
            result = api.study(**options, log=render.console.print, progress=render.live_progress())
        except api.NoTrialCompletedError as exc:
            render.study_summary(exc.result)
            raise
        render.study_summary(result)
        return 0

    run(go)


@app.command()
def pipeline(
    encoder: Annotated[
        EncoderName, typer.Option(help="The encoder the classifier is built on.")
    ] = EncoderName.ae,
    budget: Annotated[
        str,
        typer.Option(
            help="Wall time for all four stages: 30m, 90s, 1.5h, 1h30m, or least (the "
            "smallest this machine needs for one trial of each study and both promotions)."
        ),
    ] = "30m",
    dataset: DatasetOpt = DEFAULT_DATASET,
    data_dir: DataDirOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = 1,
    train_size: TrainSizeOpt = None,
    val_size: ValSizeOpt = 12_000,
    warm_start: Annotated[
        bool,
        typer.Option(
            help="Start each new study from the best configurations of the latest other "
            "study of its stage on this project (says which; a stage with none starts cold)."
        ),
    ] = False,
    encoder_target: Annotated[
        float | None,
        typer.Option(help="The encoder study stops starting trials once one reaches this value."),
    ] = None,
    head_target: Annotated[
        float | None,
        typer.Option(help="The head study stops starting trials once one reaches this value."),
    ] = None,
    trial_timeout: Annotated[
        str | None,
        typer.Option(
            help="Every trial of both studies: a trial running longer (seconds, or 90s, 10m) "
            "is interrupted, killed if it does not answer, failed and not retried."
        ),
    ] = None,
    retrain: Annotated[
        bool | None,
        typer.Option(
            "--retrain/--no-retrain",
            help="--no-retrain: both promotions test their trials' own models (promote "
            "--no-retrain), and the time their retrains would take goes to the studies "
            "(default: retrains only where the head's trials still run their full epochs).",
        ),
    ] = None,
) -> None:
    """Encoder study, its promotion, head study, its promotion and the report, in a budget.

    Rerun it to resume: ended stages are skipped, an interrupted study is topped up."""
    options = keywords(locals())

    def go() -> int:
        render.pipeline(api.pipeline(**options, log=render.console.print))
        return 0

    run(go)


@app.command()
def promote(
    stage: StageArg,
    study_name: StudyNameOpt = None,
    encoder: EncoderOpt = EncoderName.ae,
    top_k: Annotated[int, typer.Option(min=1, help="Complete trials considered.")] = 3,
    seeds: Annotated[
        int, typer.Option(min=0, help="Extra training runs per candidate, other seeds.")
    ] = 0,
    force: Annotated[
        bool, typer.Option(help="Evaluate on the test split again an already promoted trial.")
    ] = False,
    pick: Annotated[
        str,
        typer.Option(
            help="A multi-objective study: the Pareto front's trial to promote: knee "
            "(an even trade-off) or the best of one objective (elbo, loss, probe)."
        ),
    ] = "knee",
    iwae_k: Annotated[
        int,
        typer.Option(min=1, help="A VAE: importance samples per test image for test_nll_iwae."),
    ] = 100,
    members: Annotated[
        int,
        typer.Option(
            min=1,
            help="A classifier: retrain the champion with this many seeds and register the "
            "average of their class probabilities (each member costs one retrain).",
        ),
    ] = 1,
    mirror: Annotated[
        bool | None,
        typer.Option(
            "--mirror/--no-mirror",
            help="A classifier: average each test image with its mirror (default: where it "
            "was trained on mirrored images: train.augment flip_shift or flip_alt*).",
        ),
    ] = None,
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain/--no-retrain",
            help="--no-retrain: promote the champion trial's own model, kept when it ended, "
            "instead of retraining it on train + validation; --members then averages the "
            "next-best trials' own models, each where it raises validation accuracy.",
        ),
    ] = True,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    dataset: DatasetOpt = DEFAULT_DATASET,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "auto",
    allow_pickle: AllowPickleOpt = False,
) -> None:
    """Choose the champion on validation data, retrain it, evaluate it once on test, register it."""
    options = keywords(locals())

    def go() -> int:
        render.promotion(api.promote(**options, log=render.console.print))
        return 0

    run(go)


@app.command()
def curve(
    stage: Annotated[StageName, typer.Argument(help="The promoted study: ae, vae, mlp or cnn.")],
    sizes: Annotated[
        str, typer.Option(help="Training-set sizes, comma-separated.")
    ] = "20000,30000,40000,50000,60000",
    study_name: StudyNameOpt = None,
    encoder: EncoderOpt = EncoderName.ae,
    dataset: DatasetOpt = DEFAULT_DATASET,
    data_dir: DataDirOpt = None,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
    device: DeviceOpt = "auto",
    allow_pickle: AllowPickleOpt = False,
) -> None:
    """Learning curve: the promoted config retrained on growing subsets, each tested once."""
    options = keywords(locals())
    options["sizes"] = comma_integers(sizes, "--sizes", least=1)

    def go() -> int:
        render.curve(api.curve(**options, log=render.console.print))
        return 0

    run(go)


@app.command()
def compare(
    stage: Annotated[StageName, typer.Argument(help="The study's stage: ae or vae.")],
    top: Annotated[int, typer.Option(min=1, help="The best trials to show.")] = 5,
    trials: Annotated[
        str | None, typer.Option(help="These trials instead, comma-separated: 3,7,9.")
    ] = None,
    study_name: StudyNameOpt = None,
    dataset: DatasetOpt = DEFAULT_DATASET,
    storage: StorageOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """The same validation images reconstructed by several trials, one row each, labelled:
    written to reports/ and to the study's MLflow run (compare/)."""
    options = keywords(locals())
    options["trials"] = comma_integers(trials, "--trials", least=0) if trials else ()

    def go() -> int:
        found = api.compare(**options)
        render.console.print(
            f"wrote {render.shown(found.path)} and {found.artifact} in the study's MLflow run"
        )
        return 0

    run(go)
