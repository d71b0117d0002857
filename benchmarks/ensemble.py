"""What averaging several trained classifiers buys, on the validation split alone.

For each split seed: ae.yaml's typical encoder on the 48,000 training images, then K heads of
mlp.yaml's typical config on it, each with its own seed (initialisation, augmentation, batch
order). Each member's validation accuracy after its last epoch is set against the accuracy of
the average of the first 2..K members' class probabilities, and against each with mirrored
test-time augmentation (the image and its mirror averaged; Fashion-MNIST's classes survive a
mirror). The test split is never opened. Records the run under `benchmarks/results/`.

    python benchmarks/ensemble.py [--seeds 0,1,2] [--members 3] [--head-epochs 25]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from defaults import typical

from vae_tune.data.splits import load_splits
from vae_tune.evaluation.tasks import AutoencoderTask, HeadTask, retrain
from vae_tune.models.config import build_config
from vae_tune.models.nets import Autoencoder, Ensemble, Model

from common import print_table, progress, quiet, write_result


@torch.no_grad()
def probabilities(model: Model, images: torch.Tensor, mirror: bool) -> torch.Tensor:
    """Class probabilities as a promotion computes them (`Ensemble`, mirrored or not)."""
    classifier = Ensemble([model], mirror=True).eval() if mirror else model.eval()
    return torch.cat(
        [classifier(images[i : i + 2048]).softmax(1) for i in range(0, len(images), 2048)]
    )


def run(seed: int, members: int, head_epochs: int | None) -> dict[str, Any]:
    splits = load_splits("fashion-mnist", seed=seed)
    encoder, _ = retrain(AutoencoderTask("ae", splits), build_config(typical("ae", splits)), seed)
    assert isinstance(encoder, Autoencoder)
    head_values = typical("mlp", splits)
    if head_epochs is not None:
        head_values["train.epochs"] = head_epochs
    config = build_config(head_values)
    task = HeadTask(encoder, splits)
    y = splits.val_y
    plain: list[torch.Tensor] = []
    mirrored: list[torch.Tensor] = []
    head_s = []
    for member in range(members):
        started = time.perf_counter()
        model, _ = retrain(task, config, 1000 * seed + member)
        head_s.append(time.perf_counter() - started)
        plain.append(probabilities(model, splits.val_x, mirror=False))
        mirrored.append(probabilities(model, splits.val_x, mirror=True))
        progress(f"seed {seed} member {member}: {head_s[-1]:.0f} s")

    def accuracy(ps: list[torch.Tensor]) -> float:
        return float((torch.stack(ps).mean(0).argmax(1) == y).float().mean())

    return {
        "seed": seed,
        "head_epochs": config.train.epochs,
        "head_s": head_s,
        "single": [accuracy([p]) for p in plain],
        "single_mirrored": [accuracy([p]) for p in mirrored],
        "ensemble": {k: accuracy(plain[:k]) for k in range(2, members + 1)},
        "ensemble_mirrored": {k: accuracy(mirrored[:k]) for k in range(2, members + 1)},
    }


def main() -> None:
    quiet()
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--head-epochs", type=int, help="instead of the head space's own")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [run(seed, args.members, args.head_epochs) for seed in seeds]

    def row(name: str, values: list[float]) -> list[str]:
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        shown = ", ".join(f"{100 * v:.2f}" for v in values)
        return [name, f"{100 * statistics.fmean(values):.2f} +- {100 * std:.2f}", shown]

    rows = [
        row("one member (each seed's mean)", [statistics.fmean(r["single"]) for r in runs]),
        row("one member, mirrored", [statistics.fmean(r["single_mirrored"]) for r in runs]),
    ]
    for k in range(2, args.members + 1):
        rows.append(row(f"{k} members", [r["ensemble"][k] for r in runs]))
        rows.append(row(f"{k} members, mirrored", [r["ensemble_mirrored"][k] for r in runs]))
    path = write_result("ensemble", {"split": "validation only", "runs": runs}, seeds=seeds)
    print_table(
        f"averaged classifiers on the validation split (12,000 images), split seeds {args.seeds}",
        ["classifier", "val accuracy %", "runs"],
        rows,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
