"""Frozen-encoder vs fine-tuning MLP-head trials: wall time per trial on real Fashion-MNIST.

Both trials train the same head config for the same epochs on the 48,000-image training split;
the frozen one trains on latents (computed once per study, timed separately), the fine-tuning
one runs the encoder forward and backward too. Prints a table and writes the run's record
under benchmarks/results/.

    python benchmarks/head_modes.py [--epochs 3] [--repeats 3] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from vae_tune.data.splits import load_splits
from vae_tune.evaluation.tasks import HeadTask
from vae_tune.models.config import HeadConfig, ModelConfig, TrainConfig, TrialConfig
from vae_tune.models.nets import build_model
from vae_tune.models.train import fit

from common import write_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256, help="as in search_spaces/mlp.yaml")
    parser.add_argument("--out", type=Path, help="a copy of the run's record here too")
    args = parser.parse_args()

    splits = load_splits("fashion-mnist")
    torch.manual_seed(0)
    encoder = build_model("ae", ModelConfig(latent_dim=64))  # weights do not change the timing
    task = HeadTask(encoder, splits, {})
    started = time.perf_counter()
    task.latents()
    encode_s = time.perf_counter() - started

    rows = [
        _compare(task, HeadConfig(hidden1=h1, hidden2=h2), args)
        for h1, h2 in ((64, 32), (256, 128), (512, 256))  # low, default, high of mlp.yaml
    ]
    result = {
        "benchmark": "head_modes",
        "train_images": len(splits.train_x),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "encode_once_s": encode_s,
        "heads": rows,
    }
    path = write_result("head_modes", result, args.out, seeds=[0])
    print(f"{'head':<10}{'frozen s':>10}{'finetune s':>12}{'speed-up':>10}  (median [min, max])")
    for row in rows:
        f, t = row["frozen_s"], row["finetune_s"]
        print(
            f"{row['head']:<10}{f['median']:>10.2f}{t['median']:>12.2f}{row['speedup']:>9.1f}x"
            f"  [{f['min']:.2f}, {f['max']:.2f}] [{t['min']:.2f}, {t['max']:.2f}]"
        )
    print(f"encoding the split once (frozen mode, once per study): {encode_s:.2f} s")
    print(f"wrote {path}")


def _compare(task: HeadTask, head: HeadConfig, args: argparse.Namespace) -> dict:
    """Median wall time of one trial of this head in each mode, and the ratio."""
    times: dict[str, list[float]] = {}
    accuracy: dict[str, float] = {}
    for mode in ("frozen", "finetune"):
        config = TrialConfig(
            head=dataclasses.replace(head, mode=mode),
            train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size),
        )
        for _ in range(args.repeats):
            torch.manual_seed(0)
            started = time.perf_counter()
            model = task.build(config)
            history = fit(model, *task.data(config), config.train)
            times.setdefault(mode, []).append(time.perf_counter() - started)
            accuracy[mode] = history[-1].metrics["val_accuracy"]
    stats = {
        m: {"median": statistics.median(t), "min": min(t), "max": max(t)} for m, t in times.items()
    }
    return {
        "head": f"{head.hidden1}/{head.hidden2}",
        "frozen_s": stats["frozen"],
        "finetune_s": stats["finetune"],
        "speedup": stats["finetune"]["median"] / stats["frozen"]["median"],
        "val_accuracy_last_run": accuracy,
    }


if __name__ == "__main__":
    main()
