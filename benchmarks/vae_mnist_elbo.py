"""The conv VAE on dynamically binarized MNIST: test negative ELBO in nats per image.

Trains one configuration (the fixed values of search_spaces/vae_mnist.yaml plus the params
given here) on the 50,000-image training split, then evaluates the sealed test split once:
the single-sample negative ELBO with a fixed-seed binarization. The reference in DESIGN.md is
102.7 nats (an MLP VAE, latent 20, after 200 epochs). Prints a line per epoch and writes the
run's record under benchmarks/results/.

    python benchmarks/vae_mnist_elbo.py [--epochs 20] [--latent-dim 32] [--lr 1e-3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from vae_tune.data.splits import load_splits, load_test
from vae_tune.models.config import build_config
from vae_tune.models.nets import build_model
from vae_tune.models.train import evaluate, fit
from vae_tune.space.spaces import load_space

from common import write_result

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, help="a copy of the run's record here too")
    args = parser.parse_args()

    space = load_space(REPO / "search_spaces" / "vae_mnist.yaml")
    flat = {
        **space.fixed,
        "model.latent_dim": args.latent_dim,
        "train.lr": args.lr,
        "train.optimizer": "adam",
        "train.epochs": args.epochs,
    }
    config = build_config(flat)
    splits = load_splits("mnist", val_size=10_000)
    torch.manual_seed(0)
    model = build_model("vae", config.model)
    started = time.perf_counter()
    history = fit(
        model,
        (splits.train_x,),
        (splits.val_x,),
        config.train,
        on_epoch_end=lambda r: print(
            f"epoch {r.epoch}: val -ELBO {r.metrics['val_neg_elbo']:.2f} nats "
            f"(recon {r.metrics['val_recon']:.2f}, KL {r.metrics['val_kl']:.2f}), "
            f"{r.metrics['epoch_time_s']:.1f} s"
        ),
    )
    train_s = time.perf_counter() - started
    test_x, _ = load_test("mnist")
    test = evaluate(model, (test_x,), seed=0)
    result = {
        "benchmark": "vae_mnist_elbo",
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()},
        "train_images": len(splits.train_x),
        "epochs": args.epochs,
        "train_s": train_s,
        "val_neg_elbo": history[-1].metrics["val_neg_elbo"],
        "test_neg_elbo_nats": test["neg_elbo"],
        "test_recon_nats": test["recon"],
        "test_kl_nats": test["kl"],
        "test_mse": test["mse"],
        "reference_neg_elbo_nats": 102.7,
    }
    path = write_result("vae_mnist_elbo", result, args.out, seeds=[0])
    minutes = train_s / 60
    print(
        f"test negative ELBO {test['neg_elbo']:.2f} nats/image after {args.epochs} epochs "
        f"({minutes:.1f} min); reference 102.7 after 200 epochs. Wrote {path}"
    )


if __name__ == "__main__":
    main()
