"""bf16 against fp32 on this machine: epoch time at equal validation quality, for the default
encoder (ae.yaml at its typical config) and the fine-tuned head on it (mlp.yaml).

Per seed, fp32 and bf16 runs alternate, so machine drift hits both alike; each trains on the
48,000 training images and is judged on the 12,000 validation ones (the test split is never
read). Reports the median epoch time, the speed-up (fp32 time / bf16 time) and the validation
loss and accuracy of each, and whether the CPU has AVX-512 BF16 or AMX.

    python benchmarks/precision.py [--seeds 0,1,2] [--encoder-epochs 4] [--head-epochs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from vae_tune.data.defaults import data_defaults
from vae_tune.data.splits import load_splits
from vae_tune.evaluation.tasks import AutoencoderTask, HeadTask, retrain
from vae_tune.models.config import build_config
from vae_tune.models.nets import Autoencoder
from vae_tune.project.folder import Project
from vae_tune.space.spaces import load_space

from common import print_table, progress, quiet, show, spread, write_result


def cpu_flags() -> dict[str, bool]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    return {flag: f" {flag}" in text for flag in ("avx512_bf16", "amx_bf16", "avx512f")}


def typical(stage: str, splits, epochs: int) -> dict:
    space = load_space(Project(Path.cwd()).space_path(stage))
    values = {**space.fixed, **{p.name: p.middle() for p in space.params}}
    values |= data_defaults(values, splits)
    return {**values, "train.epochs": epochs}


def run(task, values: dict, precision: str, seed: int) -> tuple[float, dict, object]:
    config = build_config({**values, "train.precision": precision})
    started = time.perf_counter()
    model, history = retrain(task, config, seed, validate=True)
    wall = time.perf_counter() - started
    epoch = statistics.median(h.metrics["epoch_time_s"] for h in history)
    return epoch, {**history[-1].metrics, "wall_s": wall}, model


def main() -> None:
    quiet()
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--encoder-epochs", type=int, default=4)
    parser.add_argument("--head-epochs", type=int, default=5)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    splits = load_splits("fashion-mnist")
    encoder_values = typical("ae", splits, args.encoder_epochs)
    head_values = typical("mlp", splits, args.head_epochs)
    runs: list[dict] = []
    for seed in seeds:
        encoders = {}
        for precision in ("fp32", "bf16"):
            epoch, last, model = run(AutoencoderTask("ae", splits), encoder_values, precision, seed)
            encoders[precision] = model
            runs.append(
                {
                    "model": "ae",
                    "precision": precision,
                    "seed": seed,
                    "epoch_s": epoch,
                    "val_loss": last["val_loss"],
                }
            )
            progress(
                f"ae {precision} seed {seed}: {epoch:.2f} s/epoch, val_loss {last['val_loss']:.5f}"
            )
        for precision in ("fp32", "bf16"):  # each on the encoder trained in its precision
            encoder = encoders[precision]
            assert isinstance(encoder, Autoencoder)
            head = HeadTask(encoder, splits)
            epoch, last, _ = run(head, head_values, precision, seed)
            runs.append(
                {
                    "model": "mlp",
                    "precision": precision,
                    "seed": seed,
                    "epoch_s": epoch,
                    "val_accuracy": last["val_accuracy"],
                }
            )
            progress(
                f"mlp {precision} seed {seed}: {epoch:.2f} s/epoch, val_accuracy "
                f"{last['val_accuracy']:.4f}"
            )
    rows, summary = [], {}
    for model, quality in (("ae", "val_loss"), ("mlp", "val_accuracy")):
        pick = {
            p: [r for r in runs if r["model"] == model and r["precision"] == p]
            for p in ("fp32", "bf16")
        }
        ratios = [
            f["epoch_s"] / b["epoch_s"] for f, b in zip(pick["fp32"], pick["bf16"], strict=True)
        ]
        summary[model] = {
            p: {
                "epoch_s": spread([r["epoch_s"] for r in rs]),
                quality: spread([r[quality] for r in rs]),
            }
            for p, rs in pick.items()
        } | {"speedup": spread(ratios)}
        for p in ("fp32", "bf16"):
            rows.append(
                [
                    model,
                    p,
                    show(summary[model][p]["epoch_s"]),
                    show(summary[model][p][quality], 4),
                    quality,
                ]
            )
        rows.append([model, "fp32 / bf16", show(summary[model]["speedup"]), "", "speed-up"])
    result = {
        "seeds": seeds,
        "cpu_flags": cpu_flags(),
        "summary": summary,
        "runs": runs,
        "threads": torch.get_num_threads(),
    }
    path = write_result("precision", result, seeds=seeds)
    print_table(
        f"bf16 against fp32, seeds {args.seeds}, median [min, max]; CPU flags {cpu_flags()}",
        ["model", "precision", "s / epoch", "validation", "metric"],
        rows,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
