"""What a trial's picture costs: rendering and logging it, against the trial it belongs to.

A default AE trial (search_spaces/ae.yaml at the middle of its ranges, its epochs on the real
training split) is timed by calibration; the picture (reconstructions of 16 validation images,
PNG, logged to a real SQLite MLflow run and to optuna-dashboard's artifact store) is timed over
repeats. The target: at most 2 % of the trial.

    python benchmarks/pictures.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import torch

from vae_tune.calibrate import epoch_seconds
from vae_tune.data import load_splits
from vae_tune.gallery import Gallery
from vae_tune.models import build_model
from vae_tune.space import load_space
from vae_tune.tracking import Tracker

from common import REPO, print_table, quiet, spread, write_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--stages", default="ae,vae")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    quiet()
    splits = load_splits("fashion-mnist")
    result: dict = {"stages": {}}
    rows = []
    for stage in args.stages.split(","):
        space = load_space(REPO / "search_spaces" / f"{stage}.yaml")
        config = space.typical_config()
        torch.manual_seed(0)
        model = build_model(stage, config.model)
        trial_s = config.train.epochs * epoch_seconds(
            model, (splits.train_x,), (splits.val_x,), config.train
        )
        picture = picture_seconds(model, splits.val_x[:16], args.repeats)
        share = spread([p / trial_s for p in picture])
        result["stages"][stage] = {"trial_s": trial_s, "picture_s": spread(picture), "share": share}
        rows.append(
            [
                stage,
                f"{trial_s:.1f}",
                f"{statistics.median(picture) * 1000:.0f}",
                f"{share['median']:.2%} [{share['min']:.2%}, {share['max']:.2%}]",
            ]
        )
    path = write_result("pictures", result, args.out)
    print_table(
        f"a trial's picture against a default trial ({args.repeats} pictures each)",
        ["stage", "trial s", "picture ms (median)", "share of the trial"],
        rows,
    )
    print(f"wrote {path}")


def picture_seconds(model, images: torch.Tensor, repeats: int) -> list[float]:
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
