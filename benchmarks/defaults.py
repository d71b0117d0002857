"""The shipped defaults, chosen again on the validation split alone.

Each candidate is one encoder design and one head design, trained as the natural path trains
them: the encoder on the 48,000 training images (the space's typical config: the middle of
each searched range), then the head on that encoder, judged by its best validation accuracy
on the 12,000 validation images. The test split is never opened. Three seeds by default;
mean +- std and every run are printed and recorded under `benchmarks/results/`.

Candidates:
- `wide-finetune`: ae.yaml's encoder (channels 32/64/128, hidden 256, batch norm), the
  fine-tuned head of mlp.yaml (random flips and shifts, cosine), both without the tricks
  below (BASE_ENCODER, BASE_HEAD): the default until issue 44, the reference of the tricks;
- `shipped`: ae.yaml and mlp.yaml as this commit ships them, whatever they fix;
- `narrow-finetune`: the reference study's encoder (8/16/32, hidden 64, no batch norm), the same
  head;
- `wide-frozen`: ae.yaml's encoder, mlp_frozen.yaml's head on frozen latents;
- `vae-wide-finetune`: vae.yaml as shipped (ae.yaml's wide encoder and its 4 cosine epochs), the
  fine-tuned head;
- `vae-narrow-finetune`: vae.yaml with the reference's narrow encoder over 8 epochs at a constant
  rate (vae.yaml until 57419d5), the same head.

The AE candidates run by default; `--candidates vae-narrow-finetune,vae-wide-finetune` compares
the VAE's. Every `auto` (augmentation, likelihood) is decided as a study decides it.

The fastest trainers' tricks (issue 44), each one change to `wide-finetune`: on the head
(`head-*`: its fixed values overridden) or on the encoder (`enc-*`), so each is compared with
`wide-finetune` of the same seeds:
- `head-ls`: train.label_smoothing 0.1; `head-ema`: train.ema 0.999; `head-onecycle`:
  train.schedule onecycle; `head-flipalt`: train.augment flip_alt_shift (instead of random
  flips); `head-bnlr`: train.bn_lr_scale 4 (the fine-tuned encoder's batch norm);
  `head-tricks`: all but the flips together (any dataset), `head-tricks-flipalt`: all five;
- `enc-ema`: train.ema 0.99 (4 epochs: a shorter average); `enc-onecycle`; `enc-flipalt`:
  train.augment flip_alt (ae.yaml trains on unaugmented images); `enc-bnlr`: bn_lr_scale 4;
  `enc-tricks`: EMA and batch-norm lr together; `enc-dirac`: model.init dirac (identity-like
  convs).
Candidates that mirror images are refused on data whose mirror image is no image of its class
(`--dataset mnist`). Head candidates reuse the encoder a same-seed candidate has already
trained with the same encoder config: the same weights a retrain would give (the seed is set
before each training), an encoder's training paid once.

    python benchmarks/defaults.py [--seeds 0,1,2] [--head-epochs 25] [--candidates ...]
        [--dataset mnist]

The tricks, one seed per run (each run writes its own record; run alone on the machine):

    python benchmarks/defaults.py --seeds 0 --candidates wide-finetune,head-ls,head-ema,\
head-onecycle,head-flipalt,head-bnlr,head-tricks,head-tricks-flipalt,enc-ema,enc-onecycle,\
enc-flipalt,enc-bnlr
    python benchmarks/defaults.py --seeds 0 --dataset mnist --candidates wide-finetune,head-ls,\
head-ema,head-onecycle,head-bnlr,head-tricks,enc-ema,enc-onecycle,enc-bnlr
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from vae_tune.data.catalog import source
from vae_tune.data.defaults import data_defaults
from vae_tune.data.splits import Splits, load_splits
from vae_tune.evaluation.tasks import AutoencoderTask, HeadTask, retrain
from vae_tune.models.augment import MIRRORING
from vae_tune.models.config import build_config
from vae_tune.models.nets import Autoencoder
from vae_tune.models.train import EpochResult
from vae_tune.project.folder import Project
from vae_tune.space import stages
from vae_tune.space.spaces import load_space

from common import print_table, progress, quiet, write_result

# The encoder and head as shipped before issue 44's tricks, spelt out: each trick is one change
# to them, and `wide-finetune` keeps meaning what its records measured whatever the shipped
# spaces now fix. `random flips` is what `train.augment: auto` chose then.
RANDOM_FLIPS = "random flips"  # flip_shift where a mirrored image keeps its class, else shift
BASE_TRAINING: dict[str, Any] = {
    "train.schedule": "cosine",
    "train.ema": 0.0,
    "train.bn_lr_scale": 1.0,
}
BASE_ENCODER: dict[str, Any] = {**BASE_TRAINING, "model.init": "default"}
BASE_HEAD: dict[str, Any] = {
    **BASE_TRAINING,
    "train.augment": RANDOM_FLIPS,
    "train.label_smoothing": 0.0,
}
NARROW = {"model.channels": [8, 16, 32], "model.hidden": 64, "model.batchnorm": False}
# vae.yaml until 57419d5: the narrow encoder over 8 epochs at a constant rate
NARROW_VAE = {**NARROW, "train.epochs": 8, "train.schedule": "constant"}
HEAD_TRICKS: dict[str, dict[str, Any]] = {
    "head-ls": {"train.label_smoothing": 0.1},
    "head-ema": {"train.ema": 0.999},  # ~1,000 steps: under 3 of the head's 25 epochs
    "head-onecycle": {"train.schedule": "onecycle"},
    "head-flipalt": {"train.augment": "flip_alt_shift"},
    "head-bnlr": {"train.bn_lr_scale": 4.0},
}
# Together: every head trick but the flips (any dataset), and with them (mirroring data only).
HEAD_TRICKS["head-tricks"] = {
    k: v
    for name, values in HEAD_TRICKS.items()
    if name != "head-flipalt"
    for k, v in values.items()
}
HEAD_TRICKS["head-tricks-flipalt"] = {**HEAD_TRICKS["head-tricks"], **HEAD_TRICKS["head-flipalt"]}
ENCODER_TRICKS: dict[str, dict[str, Any]] = {
    "enc-ema": {"train.ema": 0.99},  # ~100 steps: the encoder trains 4 epochs of 375
    "enc-onecycle": {"train.schedule": "onecycle"},
    "enc-flipalt": {"train.augment": "flip_alt"},
    "enc-bnlr": {"train.bn_lr_scale": 4.0},
    "enc-dirac": {"model.init": "dirac"},
}
# The two that led alone on Fashion-MNIST (EMA and batch-norm lr), together.
ENCODER_TRICKS["enc-tricks"] = {**ENCODER_TRICKS["enc-ema"], **ENCODER_TRICKS["enc-bnlr"]}
# name -> (encoder stage, overrides of its space's fixed values, head space, the head's)
CANDIDATES: dict[str, tuple[str, dict[str, Any], str, dict[str, Any]]] = {
    "wide-finetune": ("ae", BASE_ENCODER, "mlp", BASE_HEAD),
    "narrow-finetune": ("ae", {**BASE_ENCODER, **NARROW}, "mlp", BASE_HEAD),
    "wide-frozen": ("ae", BASE_ENCODER, "mlp_frozen", {}),
    "vae-wide-finetune": ("vae", {}, "mlp", BASE_HEAD),
    "vae-narrow-finetune": ("vae", NARROW_VAE, "mlp", BASE_HEAD),
    **{
        name: ("ae", BASE_ENCODER, "mlp", {**BASE_HEAD, **values})
        for name, values in HEAD_TRICKS.items()
    },
    **{
        name: ("ae", {**BASE_ENCODER, **values}, "mlp", BASE_HEAD)
        for name, values in ENCODER_TRICKS.items()
    },
    # The spaces as shipped now (their winners): whatever this commit's files fix.
    "shipped": ("ae", {}, "mlp", {}),
}
AE_CANDIDATES = ["wide-finetune", "narrow-finetune", "wide-frozen"]
# (dataset, seed, encoder stage, its config) -> the trained encoder, its history, seconds
Trained = tuple[Autoencoder, list[EpochResult], float]
_ENCODERS: dict[tuple[str, int, str, str], Trained] = {}


def typical(stage: str, splits: Splits, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The flat config at the middle of every searched range of the shipped space, its `auto`
    values decided for the data."""
    space = load_space(Project(Path.cwd()).space_path(stage))
    values = {**space.fixed, **{p.name: p.middle() for p in space.params}, **(overrides or {})}
    if values.get("train.augment") == RANDOM_FLIPS:
        values["train.augment"] = "flip_shift" if splits.mirror else "shift"
    return values | data_defaults(values, splits)


def mirrors(name: str) -> bool:
    """Whether a candidate shows its models mirrored images."""
    _, encoder_overrides, _, head_overrides = CANDIDATES[name]
    chosen = {encoder_overrides.get("train.augment"), head_overrides.get("train.augment")}
    return bool(chosen & set(MIRRORING))


def trained_encoder(
    splits: Splits, stage: str, overrides: dict[str, Any], seed: int
) -> tuple[Trained, bool]:
    """The candidate's encoder, trained once per seed and config (however its candidate spells
    it: `shipped` may be a trick's); whether it was reused."""
    values = typical(stage, splits, overrides)
    key = (splits.dataset, seed, stage, repr(sorted(values.items())))
    reused = key in _ENCODERS
    if not reused:
        started = time.perf_counter()
        config = build_config(values)
        encoder, history = retrain(AutoencoderTask(stage, splits), config, seed, validate=True)
        assert isinstance(encoder, Autoencoder)
        _ENCODERS[key] = (encoder, history, time.perf_counter() - started)
    return _ENCODERS[key], reused


def run(name: str, seed: int, head_epochs: int | None, dataset: str) -> dict[str, Any]:
    stage, encoder_overrides, head_space, head_overrides = CANDIDATES[name]
    splits = load_splits(dataset, seed=seed)
    (encoder, history, encoder_s), reused = trained_encoder(splits, stage, encoder_overrides, seed)
    head_values = typical(head_space, splits, head_overrides)
    if head_epochs is not None:
        head_values["train.epochs"] = head_epochs
    head_config = build_config(head_values)
    task = HeadTask(encoder, splits)  # a fine-tuned head tunes its own copy of the encoder
    started = time.perf_counter()
    _, head_history = retrain(task, head_config, seed, validate=True)
    accuracies = [h.metrics["val_accuracy"] for h in head_history]
    return {
        "candidate": name,
        "dataset": dataset,
        "seed": seed,
        "encoder_reused": reused,  # encoder_s: its one training, counted in each wall time
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
    parser.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist or mnist")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.candidates.split(",")
    unknown = [name for name in names if name not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidates {unknown}; known: {', '.join(CANDIDATES)}")
    mirrored = [name for name in names if mirrors(name)]
    if mirrored and not source(args.dataset).mirror:
        parser.error(f"{args.dataset}: a mirrored image is no image of its class: {mirrored}")
    runs = []
    for seed in seeds:  # seed-major: the candidates of a seed share their encoder
        _ENCODERS.clear()  # the last seed's encoders are needed no more
        for name in names:
            runs.append(run(name, seed, args.head_epochs, args.dataset))
            r = runs[-1]
            progress(
                f"{name} seed {seed}: val accuracy {r['val_accuracy']:.4f} (epoch "
                f"{r['best_epoch']}), {r['encoder_s']:.0f} + {r['head_s']:.0f} s"
            )
    rows, summary = [], {}
    for name in names:
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
    result = {
        "split": "validation only",
        "dataset": args.dataset,
        "seeds": seeds,
        "summary": summary,
        "runs": runs,
    }
    path = write_result("defaults", {**result, "chosen_on_validation": chosen}, seeds=seeds)
    print_table(
        f"defaults on {args.dataset}'s validation split (12,000 images), seeds {args.seeds}; "
        f"torch threads {torch.get_num_threads()}",
        ["candidate", "val accuracy %", "runs", "wall s"],
        rows,
    )
    print(f"chosen on validation: {chosen}; wrote {path}")


if __name__ == "__main__":
    main()
