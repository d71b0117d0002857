"""Does the default pruner lose the best trial? The default study beside an unpruned control.

For each seed, `vae-tune study STAGE` runs twice in one project folder: with the space's pruner
and with `--pruner none`, same seed and trial count. The sampler's start-up trials then draw the
same configurations in both, so for each of them the control says how the trial would have ended
had it not been pruned. Reported per seed: the best value and wall time of each study, and
whether a configuration the pruner stopped would have beaten every one it let finish.

    python benchmarks/pruning_control.py [--stage ae] [--seeds 0,1,2] [--n-trials 10]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import optuna
from optuna.trial import TrialState

from vae_tune.project.folder import Project

from common import print_table, progress, run_cli, show, spread, write_result

STARTUP = 5  # the shipped spaces' TPE n_startup_trials: identical configurations in both


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stage", default="ae")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n-trials", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in seeds:
            root = Path(folder) / f"seed{seed}"
            root.mkdir()
            walls = {}
            for name, extra in (("pruned", []), ("control", ["--pruner", "none"])):
                command = [
                    "study",
                    args.stage,
                    "--seed",
                    str(seed),
                    "--n-trials",
                    str(args.n_trials),
                    "--study-name",
                    name,
                    *extra,
                ]
                walls[name] = run_cli(command, root, log=root / "output.log")["wall_s"]
            runs.append(compare(root, seed, walls))
            progress(f"seed {seed}: {runs[-1]}")

    result = {
        "stage": args.stage,
        "n_trials": args.n_trials,
        "runs": runs,
        "time_ratio": spread([r["pruned_wall_s"] / r["control_wall_s"] for r in runs]),
        "best_lost": sum(r["best_lost"] for r in runs),
    }
    path = write_result("pruning_control", result, args.out, seeds=seeds)
    print_table(
        f"{args.stage}: default pruner vs none, {args.n_trials} trials, same seed",
        [
            "seed",
            "pruned best",
            "control best",
            "pruned",
            "time ratio",
            "best start-up config pruned?",
        ],
        [
            [
                r["seed"],
                f"{r['pruned_best']:.5g}",
                f"{r['control_best']:.5g}",
                r["n_pruned"],
                f"{r['pruned_wall_s'] / r['control_wall_s']:.2f}",
                r["best_lost"],
            ]
            for r in runs
        ],
    )
    print(f"time ratio (pruned / control): {show(result['time_ratio'])}; wrote {path}")


def compare(root: Path, seed: int, walls: dict[str, float]) -> dict:
    storage = Project(root).open_storage()
    pruned, control = (
        optuna.load_study(study_name=n, storage=storage) for n in ("pruned", "control")
    )
    startup = [(a, b) for a, b in zip(pruned.trials, control.trials, strict=False)][:STARTUP]
    assert all(a.params == b.params for a, b in startup), "start-up configurations differ"
    maximize = pruned.direction == optuna.study.StudyDirection.MAXIMIZE
    best_control = (max if maximize else min)(startup, key=lambda pair: pair[1].value)
    return {
        "seed": seed,
        "pruned_best": pruned.best_value,
        "control_best": control.best_value,
        "n_pruned": sum(t.state == TrialState.PRUNED for t in pruned.trials),
        "pruned_wall_s": walls["pruned"],
        "control_wall_s": walls["control"],
        # Among the identical start-up configurations: was the one that ends best when left to
        # finish stopped by the pruner?
        "best_lost": best_control[0].state == TrialState.PRUNED,
        "startup": [
            {
                "params": a.params,
                "state": a.state.name,
                "pruned_value": a.value,
                "control_value": b.value,
            }
            for a, b in startup
        ],
    }


if __name__ == "__main__":
    main()
