"""Time to quality: the whole two-stage workflow, from nothing to a test accuracy.

Runs the user's commands in a fresh project folder: an AE study, its promotion, a fine-tuning
MLP-head study on the champion encoder, its promotion (the one test evaluation). Each profile
is a budget; a study's `--timeout` keeps it inside that budget. Reported per profile: wall time
of each step and in all, the peak memory of the largest process, and the test accuracy, next to
the reference (90.08 %, a 20-trial Optuna study of a conv AE + MLP head).

    python benchmarks/time_to_quality.py [--profiles quick,budget30] [--repeats 1] [--keep DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import optuna

from vae_tune.storage import default_storage, open_storage

from common import REPO, print_table, run_cli, show, spread, write_result

REFERENCE_ACCURACY = 0.9008
SPACES = REPO / "search_spaces"
SMOKE = ["--train-size", "1000", "--val-size", "500"]
PROFILES: dict[str, list[list[str]]] = {
    # Checks that the script works, in a minute; its accuracy means nothing.
    "smoke": [
        ["study", "ae", "--n-trials", "1", "--epochs", "1", *SMOKE],
        ["promote", "ae"],
        ["study", "mlp", "--encoder", "ae", "--space", str(SPACES / "mlp_finetune.yaml"),
         "--n-trials", "1", "--epochs", "1", *SMOKE],
        ["promote", "mlp"],
    ],
    # The README's commands with small budgets: minutes on 2 CPU cores.
    "quick": [
        ["study", "ae", "--n-trials", "4", "--epochs", "2"],
        ["promote", "ae"],
        ["study", "mlp", "--encoder", "ae", "--space", str(SPACES / "mlp_finetune.yaml"),
         "--n-trials", "4", "--epochs", "6"],
        ["promote", "mlp"],
    ],
    # 30 minutes on 2 CPU cores: the studies stop starting trials at their timeouts.
    "budget30": [
        ["study", "ae", "--n-trials", "12", "--timeout", "360"],
        ["promote", "ae"],
        ["study", "mlp", "--encoder", "ae", "--space", str(SPACES / "mlp_finetune.yaml"),
         "--n-trials", "12", "--timeout", "900"],
        ["promote", "mlp"],
    ],
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profiles", default="quick,budget30")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", type=Path, help="keep the project folders here (default: none)")
    args = parser.parse_args()

    result: dict = {"reference_accuracy": REFERENCE_ACCURACY, "profiles": {}}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.profiles.split(","):
            runs = []
            for repeat in range(args.repeats):
                root = (args.keep or Path(folder)) / f"{name}-{repeat}"
                root.mkdir(parents=True)
                runs.append(workflow(PROFILES[name], root, seed=repeat))
                print(f"{name} repeat {repeat + 1}: {runs[-1]['wall_s']:.0f} s, test accuracy "
                      f"{runs[-1]['test_accuracy']:.4f}", file=sys.stderr)  # fmt: skip
            summary = {
                "commands": [" ".join(c) for c in PROFILES[name]],
                "wall_s": spread([r["wall_s"] for r in runs]),
                "test_accuracy": spread([r["test_accuracy"] for r in runs]),
                "peak_rss_mb": spread([r["peak_rss_mb"] for r in runs]),
                "reached_reference": [r["test_accuracy"] >= REFERENCE_ACCURACY for r in runs],
                "runs": runs,
            }
            result["profiles"][name] = summary
            rows.append([name, show(summary["wall_s"], 4), show(summary["test_accuracy"], 4),
                         f"{sum(summary['reached_reference'])}/{len(runs)}",
                         show(summary["peak_rss_mb"], 4)])  # fmt: skip
    reached = [p["wall_s"]["median"] for p in result["profiles"].values()
               if all(p["reached_reference"])]  # fmt: skip
    result["time_to_reference_s"] = min(reached) if reached else None
    path = write_result("time_to_quality", result, args.out)
    print_table(
        f"AE study -> promote -> fine-tuned MLP-head study -> promote (median [min, max] of "
        f"{args.repeats}); reference test accuracy {REFERENCE_ACCURACY:.2%}",
        ["profile", "wall s", "test accuracy", "reached 90.08 %", "peak RSS MiB"],
        rows,
    )
    print(f"wrote {path}")


def workflow(commands: list[list[str]], root: Path, seed: int) -> dict:
    """Run the commands in order; the test accuracy is the last promotion's record."""
    steps = [run_cli([*c, "--seed", str(seed)] if c[0] == "study" else c, root,
                     log=root / "output.log") for c in commands]  # fmt: skip
    storage = open_storage(default_storage(root))
    study = optuna.load_study(study_name="mlp-ae-fashion-mnist", storage=storage)
    (record,) = study.user_attrs["promotions"].values()
    return {
        "wall_s": sum(s["wall_s"] for s in steps),
        "peak_rss_mb": max(s["peak_rss_mb"] for s in steps),
        "test_accuracy": record["test"]["test_accuracy"],
        "steps": steps,
    }


if __name__ == "__main__":
    main()
