"""The command line's frame: the typer app, every option declared once, and `run`, which turns
a command's result or error into its exit code. The commands live beside it, in `studies.py`
(work that trains) and `views.py` (what looks at the stores); each calls one function of
`vae_tune.api` with its options as keywords of the same names, and renders what it returns."""

from __future__ import annotations

import errno
import signal
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from vae_tune import __version__
from vae_tune.cli import render
from vae_tune.errors import VaeTuneError
from vae_tune.failures import out_of_memory

app = typer.Typer(
    help="Hyperparameter-optimization studies for autoencoders and VAEs, tracked in MLflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        render.console.print(f"vae-tune {__version__}")
        raise typer.Exit()


@app.callback()
def _group(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Hyperparameter-optimization studies for autoencoders and VAEs, tracked in MLflow."""


class StageName(str, Enum):
    ae = "ae"
    vae = "vae"
    mlp = "mlp"
    cnn = "cnn"


class EncoderName(str, Enum):
    ae = "ae"
    vae = "vae"


class TrialState(str, Enum):
    complete = "complete"
    pruned = "pruned"
    fail = "fail"
    running = "running"


class ExportFormat(str, Enum):
    csv = "csv"
    parquet = "parquet"


# Every option once: its type, default and help text.
StageArg = Annotated[
    StageName,
    typer.Argument(help="ae, vae, mlp (the head on an encoder) or cnn (pixels)."),
]
StorageOpt = Annotated[
    str | None,
    typer.Option(help="Optuna storage: journal file or URL (default: studies/optuna.journal)."),
]
TrackingOpt = Annotated[
    str | None, typer.Option(help="MLflow tracking URI (default: sqlite:///mlflow.db).")
]
DEFAULT_DATASET = "fashion-mnist"

DatasetOpt = Annotated[
    str,
    typer.Option(
        help="fashion-mnist, mnist, svhn, cifar10, folder:PATH (class folders of PNG or JPEG "
        "images) or npz:PATH (arrays x_train, y_train [, x_test, y_test]).",
    ),
]
DataDirOpt = Annotated[
    Path | None, typer.Option(help="Data folder (default: $VAE_TUNE_DATA or ./data).")
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
SeedOpt = Annotated[
    int | None,
    typer.Option(
        min=0,
        max=2**32 - 1,  # what numpy's and scikit-learn's seeds take
        help="Seed of the split, the sampler and the trials (default: the space's "
        "study.sampler.seed, else 0).",
    ),
]
StudyNameOpt = Annotated[
    str | None, typer.Option(help="Study name (default: STAGE-DATASET, mlp-ENCODER-DATASET).")
]
EncoderOpt = Annotated[
    EncoderName, typer.Option(help="mlp: the stage whose encoder the head is trained on.")
]
WorkersOpt = Annotated[
    int, typer.Option(min=1, help="Worker processes on this machine sharing the study.")
]
TrainSizeOpt = Annotated[
    int | None, typer.Option(min=10, help="Train on a stratified subset of this size.")
]
ValSizeOpt = Annotated[int, typer.Option(min=1, help="Validation images.")]


def keywords(options: dict[str, Any]) -> dict[str, Any]:
    """A command's options as the API function's keywords: the names are the same by design
    (a test holds them so), enums become their values."""
    return {k: v.value if isinstance(v, Enum) else v for k, v in options.items()}


def comma_integers(text: str, option: str, least: int) -> tuple[int, ...]:
    """`3,7,9` as integers, each at least `least`; a usage error naming the option if not."""
    try:
        numbers = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(
            f"not comma-separated integers: {text!r}", param_hint=option
        ) from None
    if any(n < least for n in numbers):
        raise typer.BadParameter(f"{text!r}: each must be {least} or more", param_hint=option)
    return numbers


def run(action: Callable[[], int]) -> None:
    """Run a command; its return value is the exit code. User errors are one line and exit
    2; Ctrl-C or SIGTERM exit 130; a full or read-only disk exits 1 with one line."""
    # A kill (SIGTERM) takes the same graceful path as Ctrl-C: runs closed, study resumable.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        code = action()
    except VaeTuneError as exc:
        render.errors.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        render.errors.print("interrupted: open runs were closed; run the same command to resume.")
        raise typer.Exit(130) from None
    except Exception as exc:
        if out_of_memory(exc):
            first = (str(exc).splitlines() or [type(exc).__name__])[0]  # MemoryError() is bare
            render.errors.print(
                f"[bold red]error:[/] out of memory: {escape(first)}. "
                "Everything recorded before is intact: use a smaller batch, model or "
                "--iwae-k, or fewer --workers, and run the same command again."
            )
            raise typer.Exit(1) from None
        disk = _disk_error(exc)
        if disk is None:
            raise  # a bug: the traceback is what a report needs
        where = f" ({disk.filename})" if disk.filename else ""
        render.errors.print(
            f"[bold red]error:[/] {escape(disk.strerror or str(disk))}{escape(where)}. Everything "
            "recorded before is intact: fix this and run the same command to resume "
            "(`vae-tune doctor` checks the stores)."
        )
        raise typer.Exit(1) from None
    if code:
        raise typer.Exit(code)


DISK_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


def _disk_error(exc: BaseException | None) -> OSError | None:
    """The full, read-only or forbidden disk behind an error, however deep the libraries
    wrapped it (Optuna raises its own error while failing a trial it cannot write)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def main() -> None:
    app(prog_name="vae-tune")


if __name__ == "__main__":
    main()
