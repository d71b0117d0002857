"""Trials per hour with 1 and 2 worker processes on this machine, and the peak memory of a study.

Each run is `vae-tune study ae --n-trials N --epochs E --pruner none --workers W` in a fresh
project folder (no pruning, so every trial costs the same and the counts compare). On a GPU
machine, `--workers 1,2,4` measures several trials sharing the one GPU.

    python benchmarks/scaling.py [--workers 1,2] [--trials 4] [--epochs 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import print_table, progress, run_cli, show, spread, write_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--stage", default="ae", choices=["ae", "vae"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    counts = [int(w) for w in args.workers.split(",")]
    runs: dict[int, list[dict]] = {w: [] for w in counts}
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(args.repeats):
            for workers in counts:  # interleaved: drift in machine load hits every count alike
                root = Path(folder) / f"w{workers}-r{repeat}"
                root.mkdir()
                measured = run_cli(
                    [
                        "study",
                        args.stage,
                        "--n-trials",
                        str(args.trials),
                        "--epochs",
                        str(args.epochs),
                        "--pruner",
                        "none",
                        "--workers",
                        str(workers),
                    ],
                    root,
                    log=root / "output.log",
                )
                measured["trials_per_hour"] = args.trials / measured["wall_s"] * 3600
                runs[workers].append(measured)
                progress(
                    f"{workers} worker(s), repeat {repeat + 1}: {measured['wall_s']:.0f} s, "
                    f"peak {measured['peak_rss_mb']:.0f} MiB"
                )

    base = counts[0]
    result = {
        "stage": args.stage,
        "trials": args.trials,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "workers": {
            str(w): {
                "wall_s": spread([r["wall_s"] for r in runs[w]]),
                "trials_per_hour": spread([r["trials_per_hour"] for r in runs[w]]),
                "peak_rss_mb": spread([r["peak_rss_mb"] for r in runs[w]]),
                f"speedup_vs_{base}": spread(
                    [b["wall_s"] / r["wall_s"] for b, r in zip(runs[base], runs[w], strict=True)]
                ),
            }
            for w in counts
        },
    }
    path = write_result("scaling", result, args.out, seeds=[0])
    print_table(
        f"{args.stage} study, {args.trials} trials x {args.epochs} epochs, no pruning "
        f"(median [min, max] of {args.repeats})",
        ["workers", "wall s", "trials/hour", f"speed-up vs {base}", "peak RSS MiB"],
        [
            [
                w,
                show(r["wall_s"]),
                show(r["trials_per_hour"]),
                show(r[f"speedup_vs_{base}"]),
                show(r["peak_rss_mb"], 4),
            ]
            for w, r in result["workers"].items()
        ],
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
