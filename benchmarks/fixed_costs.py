"""What a trial costs beyond its epochs, on a model small enough that an epoch takes a fraction
of a second (where a GPU puts every model): tracking writes, pictures, the top-k redraw, study
bookkeeping.

A real study (journal storage, SQLite MLflow store, pictures, the dashboard's artifact store)
of a tiny conv AE on 2,000 Fashion-MNIST images, profiled with cProfile: per trial, its wall
time from Optuna's start to end, the seconds inside `fit`'s epochs (less the callback it runs
after each: metric writes, pruning, progress), and the cumulative seconds of each part. The
fixed cost is the trial's wall time less its epochs; the target is 10 % of a 4-epoch trial.

    python benchmarks/fixed_costs.py [--trials 8] [--epochs 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
from pathlib import Path

import optuna

from vae_tune import runner
from vae_tune.prepare import StudyRequest
from vae_tune.project import Project

from common import fixed_space, print_table, progress, quiet, show, spread, write_result

TINY = {
    "model.channels": [4, 8, 8],
    "model.hidden": 16,
    "model.latent_dim": 8,
    "train.batch_size": 128,
    "train.optimizer": "adam",
    "train.lr": 1.0e-3,
}
# Where the time beyond the epochs goes: (label, module path fragment, function name).
PARTS = [
    ("MLflow writes", "vae_tune/tracking.py", None),
    ("trial picture", "vae_tune/gallery.py", "trial"),
    ("top-k redraw", "vae_tune/gallery.py", "update_topk"),
    ("Optuna bookkeeping", "vae_tune/record/trial.py", "_set"),
    ("dashboard notes", "optuna_dashboard/_note.py", "save_note"),
    # What `fit` calls after each epoch (metric writes, pruning, progress) is not training.
    ("epoch callbacks", "vae_tune/objective.py", "on_epoch_end"),
    ("epochs (fit)", "vae_tune/train.py", "fit"),
]


def one_study(folder: Path, trials: int, epochs: int, seed: int) -> dict:
    space = fixed_space("ae", {**TINY, "train.epochs": epochs}, folder, n_trials=trials)
    request = StudyRequest(
        "ae", space=space, train_size=2000, val_size=500, seed=seed, n_trials=trials
    )
    profile = cProfile.Profile()
    profile.enable()
    runner.study(request, Project(folder, device="cpu"), log=lambda line: None)
    profile.disable()
    storage = Project(folder).open_storage()
    study = optuna.load_study(study_name="ae-fashion-mnist", storage=storage)
    walls = [(t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials]
    stats = pstats.Stats(profile)
    parts = {label: _cumulative(stats, path, name) / trials for label, path, name in PARTS}
    trial_s = statistics.fmean(walls)
    epochs_s = parts["epochs (fit)"] - parts["epoch callbacks"]
    return {
        "trial_s": trial_s,
        "epochs_s": epochs_s,
        "fixed_s": trial_s - epochs_s,
        "fixed_share": (trial_s - epochs_s) / trial_s,
        "parts_s": parts,
    }


def _cumulative(stats: pstats.Stats, path: str, name: str | None) -> float:
    """Seconds inside the matching functions, counting only the outermost calls."""
    total = 0.0
    for (file, _, function), (_, _, _, cumulative, callers) in stats.stats.items():  # type: ignore[attr-defined]
        if path in file and (name is None or function == name):
            inside = any(
                path in caller[0] and (name is None or caller[2] == name) for caller in callers
            )
            if not inside:
                total += cumulative
    return total


def main() -> None:
    quiet()
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            folder = Path(tmp) / f"r{repeat}"
            folder.mkdir()
            runs.append(one_study(folder, args.trials, args.epochs, seed=repeat))
            r = runs[-1]
            progress(
                f"repeat {repeat}: trial {r['trial_s']:.3f} s, epochs {r['epochs_s']:.3f} s, "
                f"fixed {r['fixed_share']:.1%}"
            )
    rows = [
        ["trial (wall)", show(spread([r["trial_s"] for r in runs]))],
        ["its epochs", show(spread([r["epochs_s"] for r in runs]))],
        ["fixed cost", show(spread([r["fixed_s"] for r in runs]))],
        ["fixed share of the trial", show(spread([r["fixed_share"] for r in runs]))],
    ]
    for label, _, _ in PARTS[:-1]:
        rows.append([f"  of which {label}", show(spread([r["parts_s"][label] for r in runs]))])
    result = {"trials": args.trials, "epochs": args.epochs, "runs": runs}
    path = write_result("fixed_costs", result)
    print_table(
        f"a trial of a tiny AE ({args.epochs} epochs on 2,000 images), seconds per trial, "
        "median [min, max] of the repeats",
        ["", "seconds"],
        rows,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
