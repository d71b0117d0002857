"""What a trial costs beyond its epochs, on a model small enough that an epoch takes a fraction
of a second (where a GPU puts every model): tracking writes, pictures, the top-k redraw, study
bookkeeping.

A real study (journal storage, SQLite MLflow store, pictures, the dashboard's artifact store)
of a tiny conv AE on 2,000 Fashion-MNIST images (epochs of about 0.1 s; `--train-size 8000`
for about 0.4 s): per trial (but the first, which pays the
process's warm-up), its time from its start to the next trial's start (what the study does
between trials counts) and its epochs' time as `fit` clocks it (training and validation, not
the callback after each). The fixed cost is the difference; the target is 10 % of a 4-epoch
trial. The same study again under cProfile says where that
cost goes: the cumulative seconds of each part.

    python benchmarks/fixed_costs.py [--trials 8] [--epochs 4] [--repeats 3] [--train-size 2000]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
from pathlib import Path

import optuna

from vae_tune.project.folder import Project
from vae_tune.record import TrialRecord
from vae_tune.studies.plan import StudyRequest
from vae_tune.usecases import runner

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
    ("MLflow writes", "vae_tune/tracking/tracker.py", None),
    ("trial picture", "vae_tune/tracking/gallery.py", "trial"),
    ("top-k images", "vae_tune/tracking/gallery.py", "_log_images"),
    ("top-k redraw", "vae_tune/tracking/gallery.py", "update_topk"),
    ("Optuna bookkeeping", "vae_tune/record/trial.py", "_set"),
    ("dashboard notes", "optuna_dashboard/_note.py", "save_note"),
    # What `fit` calls after each epoch (metric writes, pruning, progress) is not training.
    ("epoch callbacks", "vae_tune/studies/objective.py", "on_epoch_end"),
    ("epochs (fit)", "vae_tune/models/train.py", "fit"),
]


def one_study(folder: Path, trials: int, epochs: int, train_size: int, seed: int) -> dict:
    """Timed without a profiler (which slows Python far more than torch's kernels), then the
    same study again under cProfile for where its time goes."""
    study = run_study(folder / "timed", trials, epochs, train_size, seed)
    tracker = Project(folder / "timed").tracker()
    trial_list = sorted(study.trials, key=lambda t: t.number)
    # From one trial's start to the next one's: its sampling, its run and what the study does
    # after it (the top-k redraw, stopping rules) all count. The first trial is left out: it
    # pays the process's one-time warm-up (torch.optim imports torch._dynamo, about 1.7 s).
    counted = trial_list[1:-1]
    starts = [t.datetime_start for t in trial_list if t.datetime_start is not None]
    trial_s = (starts[-1] - starts[1]).total_seconds() / len(counted)
    epochs_s = statistics.fmean(
        sum(m.value for m in tracker.client.get_metric_history(run_id, "epoch_time_s"))
        for run_id in (TrialRecord(t).run_id for t in counted)
        if run_id is not None
    )
    profile = cProfile.Profile()
    run_study(folder / "profiled", trials, epochs, train_size, seed, profile)
    stats = pstats.Stats(profile)
    parts = {label: _cumulative(stats, path, name) / trials for label, path, name in PARTS}
    return {
        "trial_s": trial_s,
        "epochs_s": epochs_s,
        "fixed_s": trial_s - epochs_s,
        "fixed_share": (trial_s - epochs_s) / trial_s,
        "parts_s": parts,
    }


def run_study(
    folder: Path,
    trials: int,
    epochs: int,
    train_size: int,
    seed: int,
    profile: cProfile.Profile | None = None,
) -> optuna.Study:
    folder.mkdir()
    space = fixed_space("ae", {**TINY, "train.epochs": epochs}, folder, n_trials=trials)
    request = StudyRequest(
        "ae", space=space, train_size=train_size, val_size=500, seed=seed, n_trials=trials
    )
    if profile is not None:
        profile.enable()
    runner.study(request, Project(folder, device="cpu"), log=lambda line: None)
    if profile is not None:
        profile.disable()
    storage = Project(folder).open_storage()
    return optuna.load_study(study_name="ae-fashion-mnist", storage=storage)


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
    parser.add_argument("--train-size", type=int, default=2000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            folder = Path(tmp) / f"r{repeat}"
            folder.mkdir()
            runs.append(one_study(folder, args.trials, args.epochs, args.train_size, seed=repeat))
            r = runs[-1]
            progress(
                f"repeat {repeat}: trial {r['trial_s']:.3f} s, epochs {r['epochs_s']:.3f} s, "
                f"fixed {r['fixed_share']:.1%}"
            )
    rows = [
        ["trial (start to next start)", show(spread([r["trial_s"] for r in runs]))],
        ["its epochs", show(spread([r["epochs_s"] for r in runs]))],
        ["fixed cost", show(spread([r["fixed_s"] for r in runs]))],
        ["fixed share of the trial", show(spread([r["fixed_share"] for r in runs]))],
    ]
    for label, _, _ in PARTS[:-1]:
        rows.append([f"  of which {label}", show(spread([r["parts_s"][label] for r in runs]))])
    result = {
        "trials": args.trials,
        "epochs": args.epochs,
        "train_size": args.train_size,
        "runs": runs,
    }
    path = write_result("fixed_costs", result, args.out, seeds=range(args.repeats))
    print_table(
        f"a trial of a tiny AE ({args.epochs} epochs on {args.train_size:,} images), "
        "seconds per trial, median [min, max] of the repeats",
        ["", "seconds"],
        rows,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
