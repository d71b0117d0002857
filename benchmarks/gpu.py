"""The GPU benchmark, one script for a lent machine: bf16 against fp32 epochs, trials per hour
with 1, 2, 4 and 8 workers sharing one device, and the 30-minute pipeline's time to quality.
Prints JSON (and writes the run's record under benchmarks/results/). Sized for a 15-minute lease:
`--quick` halves the trial counts and skips the pipeline.

    python benchmarks/gpu.py [--workers 1,2,4,8] [--trials 8] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch

from vae_tune.data.splits import load_splits
from vae_tune.evaluation.tasks import AutoencoderTask
from vae_tune.project.folder import Project
from vae_tune.record import StudyRecord

from common import progress, run_cli, write_result
from precision import run, typical


def epoch_times(device: torch.device) -> dict:
    splits = load_splits("fashion-mnist", device=device)
    values = typical("ae", splits, epochs=3)
    out = {}
    for precision in ("fp32", "bf16"):
        epoch, last, _ = run(AutoencoderTask("ae", splits), values, precision, seed=0)
        out[precision] = {"epoch_s": epoch, "val_loss": last["val_loss"]}
    out["speedup"] = out["fp32"]["epoch_s"] / out["bf16"]["epoch_s"]
    return out


def trials_per_hour(workers: list[int], trials: int, folder: Path) -> dict:
    out = {}
    for count in workers:
        root = folder / f"w{count}"
        root.mkdir()
        args = ["study", "ae", "--n-trials", str(trials), "--epochs", "2", "--pruner", "none"]
        args += ["--workers", str(count), "--workers-per-device", str(count)]
        measured = run_cli(args, root)
        out[count] = {**measured, "trials_per_hour": trials / measured["wall_s"] * 3600}
        progress(f"{count} workers: {out[count]['trials_per_hour']:.0f} trials/hour")
    return out


def pipeline(budget: str, folder: Path) -> dict:
    root = folder / f"pipeline-{budget}"
    root.mkdir()
    started = time.time()
    measured = run_cli(["pipeline", "--budget", budget], root)
    study = optuna.load_study(
        study_name="mlp-ae-fashion-mnist", storage=Project(root).open_storage()
    )
    (record,) = StudyRecord(study).promotions.values()
    return {
        **measured,
        "test_accuracy": record.test["test_accuracy"],
        "validation_accuracy": study.best_value,
        "wall_s": time.time() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="1,2,4,8")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu.py needs a CUDA device")
    device = torch.device("cuda")
    trials = args.trials // 2 if args.quick else args.trials
    result: dict = {"device": torch.cuda.get_device_name(), "epochs": epoch_times(device)}
    progress(json.dumps(result["epochs"]))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        workers = [int(w) for w in args.workers.split(",")]
        result["trials_per_hour"] = trials_per_hour(workers, trials, folder)
        if not args.quick:
            result["pipeline_30m"] = pipeline("30m", folder)
    path = write_result("gpu", result, seeds=[0])
    print(json.dumps(result, indent=2))
    progress(f"wrote {path}")


if __name__ == "__main__":
    main()
