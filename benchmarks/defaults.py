"""The shipped defaults, chosen again on the validation split alone.

Each candidate is one encoder design and one head design, trained as the natural path trains
them: the encoder on the 48,000 training images (the space's typical config: the middle of
each searched range), then the head on that encoder, judged by its best validation accuracy
on the 12,000 validation images. The test split is never opened. Three seeds by default;
mean +- std and every run are printed and recorded under `benchmarks/results/`.

Candidates:
- `wide-finetune`: ae.yaml's encoder (channels 32/64/128, hidden 256, batch norm), the
  fine-tuned head of mlp.yaml (augmentation, cosine): today's default;
- `narrow-finetune`: the reference study's encoder (8/16/32, hidden 64, no batch norm), the same
  head;
- `wide-frozen`: ae.yaml's encoder, mlp_frozen.yaml's head on frozen latents;
- `vae-wide-finetune`: vae.yaml as shipped (ae.yaml's wide encoder and its 4 cosine epochs), the
  fine-tuned head;
- `vae-narrow-finetune`: vae.yaml with the reference's narrow encoder over 8 epochs at a constant
  rate (vae.yaml until 57419d5), the same head.

The AE candidates run by default; `--candidates vae-narrow-finetune,vae-wide-finetune` compares
the VAE's. Every `auto` (augmentation, likelihood) is decided as a study decides it.

    python benchmarks/defaults.py [--seeds 0,1,2] [--head-epochs 25] [--candidates ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from vae_tune import stages
from vae_tune.config import build_config
from vae_tune.data import Splits, load_splits
from vae_tune.datasets.defaults import data_defaults
from vae_tune.models import Autoencoder
from vae_tune.project import Project
from vae_tune.space import load_space
from vae_tune.tasks import AutoencoderTask, HeadTask, retrain

from common import print_table, progress, quiet, write_result

NARROW = {"model.channels": [8, 16, 32], "model.hidden": 64, "model.batchnorm": False}
# vae.yaml until 57419d5: the narrow encoder over 8 epochs at a constant rate
NARROW_VAE = {**NARROW, "train.epochs": 8, "train.schedule": "constant"}
CANDIDATES: dict[str, tuple[str, dict[str, Any], str]] = {
    # name -> (encoder stage, overrides of its space's fixed values, head space)
    "wide-finetune": ("ae", {}, "mlp"),
    "narrow-finetune": ("ae", NARROW, "mlp"),
    "wide-frozen": ("ae", {}, "mlp_frozen"),
    "vae-wide-finetune": ("vae", {}, "mlp"),
    "vae-narrow-finetune": ("vae", NARROW_VAE, "mlp"),
}
AE_CANDIDATES = [name for name, (stage, _, _) in CANDIDATES.items() if stage == "ae"]


def typical(stage: str, splits: Splits, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The flat config at the middle of every searched range of the shipped space, its `auto`
    values decided for the data."""
    space = load_space(Project(Path.cwd()).space_path(stage))
    values = {**space.fixed, **{p.name: p.middle() for p in space.params}, **(overrides or {})}
    return values | data_defaults(values, splits)


def run(name: str, seed: int, head_epochs: int | None) -> dict[str, Any]:
    stage, encoder_overrides, head_space = CANDIDATES[name]
    splits = load_splits("fashion-mnist", seed=seed)
    started = time.perf_counter()
    encoder_config = build_config(typical(stage, splits, encoder_overrides))
    encoder, history = retrain(AutoencoderTask(stage, splits), encoder_config, seed, validate=True)
    encoder_s = time.perf_counter() - started
    head_values = typical(head_space, splits)
    if head_epochs is not None:
        head_values["train.epochs"] = head_epochs
    head_config = build_config(head_values)
    assert isinstance(encoder, Autoencoder)
    task = HeadTask(encoder, splits)
    started = time.perf_counter()
    _, head_history = retrain(task, head_config, seed, validate=True)
    accuracies = [h.metrics["val_accuracy"] for h in head_history]
    return {
        "candidate": name,
        "seed": seed,
        "encoder_val_loss": history[-1].metrics[stages.stage(stage).default_metric],
        "val_accuracy": max(accuracies),
        "best_epoch": accuracies.index(max(accuracies)) + 1,
        "head_epochs": head_config.train.epochs,
        "encoder_s": encoder_s,
        "head_s": time.perf_counter() - started,
    }


def main() -> None:
    quiet()
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--candidates", default=",".join(AE_CANDIDATES))
    parser.add_argument("--head-epochs", type=int, help="instead of the head space's own")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    for name in args.candidates.split(","):
        for seed in seeds:
            runs.append(run(name, seed, args.head_epochs))
            r = runs[-1]
            progress(
                f"{name} seed {seed}: val accuracy {r['val_accuracy']:.4f} (epoch "
                f"{r['best_epoch']}), {r['encoder_s']:.0f} + {r['head_s']:.0f} s"
            )
    rows, summary = [], {}
    for name in args.candidates.split(","):
        mine = [r for r in runs if r["candidate"] == name]
        values = [r["val_accuracy"] for r in mine]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        summary[name] = {"val_accuracy_mean": statistics.fmean(values), "val_accuracy_std": std}
        wall = statistics.fmean(r["encoder_s"] + r["head_s"] for r in mine)
        rows.append(
            [
                name,
                f"{100 * statistics.fmean(values):.2f} +- {100 * std:.2f}",
                ", ".join(f"{100 * v:.2f}" for v in values),
                f"{wall:.0f}",
            ]
        )
    chosen = max(summary, key=lambda n: summary[n]["val_accuracy_mean"])
    result = {"split": "validation only", "seeds": seeds, "summary": summary, "runs": runs}
    path = write_result("defaults", {**result, "chosen_on_validation": chosen}, seeds=seeds)
    print_table(
        f"defaults on the validation split (12,000 images), seeds {args.seeds}; "
        f"torch threads {torch.get_num_threads()}",
        ["candidate", "val accuracy %", "runs", "wall s"],
        rows,
    )
    print(f"chosen on validation: {chosen}; wrote {path}")


if __name__ == "__main__":
    main()
