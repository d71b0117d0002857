"""Warm start: time to the best validation value of a cold and a warm `study ae` (issue 43).

For each seed, in a fresh project: two source studies are run first (not timed as part of the
comparison: warm starting presumes they exist), an MNIST study and a Fashion-MNIST study with
another seed (seed + 100; the MNIST one has seed + 200, so that no source repeats the
configurations the cold study's sampler draws); then three Fashion-MNIST studies with the same
seed and budget: cold, warm-started from the MNIST study, and from the other-seed study.
Reported per study kind (mean +- std over seeds, and every run): the best validation loss, the
time from the study's first trial to the trial that first reached its best, and the time to
reach the cold study's best value (none: never). Everything is measured on validation data; no
test split is read.

    python benchmarks/warm_start.py [--seeds 0,1,2] [--n-trials 10] [--keep DIR]
    python benchmarks/warm_start.py --smoke      # checks that it runs: tiny data, 3 trials
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import optuna
from optuna.trial import TrialState

from vae_tune.project.folder import Project

from common import print_table, progress, run_cli, write_result

SMOKE = ["--train-size", "500", "--val-size", "200", "--epochs", "1"]
KINDS = {  # study name -> its --warm-start source (None: cold)
    "cold": None,
    "warm-mnist": "ae-mnist",
    "warm-other-seed": "ae-fm-other-seed",
}


def best_timing(study: optuna.Study, reach: float | None = None) -> dict:
    """The best value, the seconds from the first trial's start to the end of the trial that
    first reached it, and to the end of the first trial at or below `reach`."""
    trials = sorted(study.get_trials(states=(TrialState.COMPLETE,)), key=lambda t: t.number)
    start = min(t.datetime_start for t in study.get_trials() if t.datetime_start)
    best = min(t.value for t in trials)

    def seconds_to(value: float) -> float | None:
        for trial in trials:
            if trial.value <= value:
                return (trial.datetime_complete - start).total_seconds()
        return None

    timing = {"best": best, "time_to_best_s": seconds_to(best), "trials": len(study.trials)}
    if reach is not None:
        timing["time_to_cold_best_s"] = seconds_to(reach)
    return timing


def run_seed(root: Path, seed: int, n_trials: int, extra: list[str]) -> dict:
    common = ["study", "ae", "--seed", str(seed), "--n-trials", str(n_trials), *extra]
    # Each source has a seed of its own: with the comparison's seed its sampler would draw the
    # very configurations the cold study draws, and warm starting would repeat them.
    sources = {
        "ae-mnist": ["--dataset", "mnist", "--seed", str(seed + 200)],
        "ae-fm-other-seed": ["--study-name", "ae-fm-other-seed", "--seed", str(seed + 100)],
    }
    for name, options in sources.items():
        progress(f"seed {seed}: source {name}")
        run_cli(["study", "ae", "--n-trials", str(n_trials), *extra, *options], root)
    storage = Project(root).open_storage()
    runs: dict = {}
    for kind, source in KINDS.items():
        progress(f"seed {seed}: {kind}")
        warm = ["--warm-start", source] if source else []
        runs[kind] = run_cli([*common, "--study-name", kind, *warm], root)
    cold = optuna.load_study(study_name="cold", storage=storage)
    cold_best = best_timing(cold)["best"]
    for kind in KINDS:
        study = optuna.load_study(study_name=kind, storage=storage)
        runs[kind] |= best_timing(study, reach=cold_best)
    return runs


def mean_std(values: list[float]) -> dict:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "runs": values}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n-trials", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="tiny data and 3 trials")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", type=Path, help="keep the project folders here")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    n_trials = 3 if args.smoke else args.n_trials
    extra = SMOKE if args.smoke else []
    per_seed = {}
    with tempfile.TemporaryDirectory() as folder:
        for seed in seeds:
            root = (args.keep or Path(folder)) / f"seed-{seed}"
            root.mkdir(parents=True)
            per_seed[seed] = run_seed(root, seed, n_trials, extra)
    result: dict = {"n_trials": n_trials, "smoke": args.smoke, "kinds": {}}
    rows = []
    for kind in KINDS:
        runs = [per_seed[s][kind] for s in seeds]
        reached = [r["time_to_cold_best_s"] for r in runs if r["time_to_cold_best_s"] is not None]
        summary = {
            "source": KINDS[kind],
            "best_val_loss": mean_std([r["best"] for r in runs]),
            "time_to_best_s": mean_std([r["time_to_best_s"] for r in runs]),
            "reached_cold_best": f"{len(reached)}/{len(runs)}",
            "runs": runs,
        }
        result["kinds"][kind] = summary
        loss, took = summary["best_val_loss"], summary["time_to_best_s"]
        each = [r["time_to_cold_best_s"] for r in runs]
        rows.append(
            [
                kind,
                f"{loss['mean']:.5f} +- {loss['std']:.5f}",
                f"{took['mean']:.0f} +- {took['std']:.0f}",
                ", ".join("-" if t is None else f"{t:.0f}" for t in each),
                summary["reached_cold_best"],
            ]
        )
    path = write_result("warm_start", result, args.out, seeds=seeds)
    print_table(
        f"study ae on Fashion-MNIST, {n_trials} trials, cold vs warm, seeds {args.seeds}",
        ["study", "best val_loss", "s to its best", "s to cold's best (runs)", "reached"],
        rows,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
