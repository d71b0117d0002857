"""What a trial pays beyond its training: its picture, and a VAE's per-epoch diagnostics.

Each is timed against the work it rides on, in the same run on this machine:
- the picture (reconstructions of 16 validation images as PNG, logged to a real SQLite MLflow
  run and to optuna-dashboard's artifact store) against a default trial (the space's epochs,
  at the middle of its ranges, on the real training split); target at most 2 %;
- the linear probe (logistic regression on the latents of 5,000 training images, scored on
  the 12,000 validation images) and the active units (one encoder pass over the validation
  split) against one epoch; target for the probe at most 15 %.

    python benchmarks/trial_extras.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import torch

from vae_tune.data.splits import load_splits
from vae_tune.evaluation.calibrate import epoch_seconds
from vae_tune.evaluation.latents import posterior_stats, probe_accuracy, probe_subset
from vae_tune.models.nets import Autoencoder, ConvVAE, build_model
from vae_tune.space.spaces import load_space
from vae_tune.tracking.gallery import Gallery
from vae_tune.tracking.tracker import Tracker

from common import REPO, print_table, quiet, spread, write_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--stages", default="ae,vae")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    quiet()
    splits = load_splits("fashion-mnist")
    probe_on = probe_subset(len(splits.train_x))
    result: dict = {"stages": {}}
    rows = []
    for stage in args.stages.split(","):
        config = load_space(REPO / "search_spaces" / f"{stage}.yaml").typical_config()
        torch.manual_seed(0)
        model = build_model(stage, config.model)
        epoch_s = epoch_seconds(model, (splits.train_x,), (splits.val_x,), config.train)
        trial_s = config.train.epochs * epoch_s
        timed = {"picture": (picture_seconds(model, splits.val_x[:16], args.repeats), trial_s)}
        fit_on = (splits.train_x[probe_on], splits.train_y[probe_on])
        validation = (splits.val_x, splits.val_y)
        timed["probe"] = (
            repeat(probe_accuracy, (model, fit_on, validation), args.repeats),
            epoch_s,
        )
        if isinstance(model, ConvVAE):
            stats = repeat(posterior_stats, (model, splits.val_x), args.repeats)
            timed["active units"] = (stats, epoch_s)
        result["stages"][stage] = {"epoch_s": epoch_s, "trial_s": trial_s}
        for name, (seconds, against) in timed.items():
            share = spread([s / against for s in seconds])
            result["stages"][stage][name] = {"seconds": spread(seconds), "share": share}
            whole = "a trial" if name == "picture" else "an epoch"
            rows.append(
                [
                    stage,
                    name,
                    f"{statistics.median(seconds) * 1000:.0f}",
                    f"{against:.1f} ({whole})",
                    f"{share['median']:.1%} [{share['min']:.1%}, {share['max']:.1%}]",
                ]
            )
    path = write_result("trial_extras", result, args.out, seeds=[0])
    print_table(
        f"what a trial pays beyond training (median [min, max] of {args.repeats})",
        ["stage", "extra", "ms", "against s", "share"],
        rows,
    )
    print(f"wrote {path}")


def repeat(work: Callable[..., object], args: tuple[object, ...], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work(*args)
        times.append(time.perf_counter() - started)
    return times


def picture_seconds(model: Autoencoder, images: torch.Tensor, repeats: int) -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        tracker = Tracker(f"sqlite:///{root / 'mlflow.db'}", root / "mlartifacts")
        experiment = tracker.experiment_id("pictures")
        parent = tracker.start_run(experiment, "study")
        gallery = Gallery(tracker, images, parent, "val_loss", root / "artifacts")
        study = optuna.create_study()
        times = []
        for _ in range(repeats):
            trial = study.ask()
            run_id = tracker.start_run(experiment, "trial", parent_run_id=parent)
            started = time.perf_counter()
            gallery.trial(trial, model, run_id, root)
            times.append(time.perf_counter() - started)
            study.tell(trial, 1.0)
        return times


if __name__ == "__main__":
    main()
