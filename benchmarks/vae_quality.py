"""The VAE against the reference reports, through the user's own commands in fresh projects:

- Fashion-MNIST representations: `study vae` on search_spaces/vae_probe.yaml (selected on a
  linear probe), `promote vae`, then `curve vae --sizes 60000`: logistic regression on the
  latents of the promoted VAE retrained on 60,000 images, test error (report: 0.1744).
- Dynamically binarized MNIST likelihood: `study vae --dataset mnist` on
  search_spaces/vae_mnist.yaml (30 epochs), `promote vae`: test negative ELBO and the
  importance-weighted NLL (report: 102.7 after 200 epochs; Burda et al.: 86.76 with k = 5000).

    python benchmarks/vae_quality.py [--parts fashion,mnist] [--n-trials 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from vae_tune.project.folder import Project
from vae_tune.record import StudyRecord

from common import REPO, print_table, progress, run_cli, write_result

SPACES = REPO / "search_spaces"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default="fashion,mnist")
    parser.add_argument("--n-trials", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iwae-k", type=int, default=100)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", type=Path, help="keep the project folders here")
    args = parser.parse_args()
    trials, seed = ["--n-trials", str(args.n_trials)], ["--seed", str(args.seed)]
    result: dict = {"seed": args.seed, "n_trials": args.n_trials, "parts": {}}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        base = args.keep or Path(folder)
        if "fashion" in args.parts:
            root = base / "fashion"
            root.mkdir(parents=True)
            steps = [
                ["study", "vae", "--space", str(SPACES / "vae_probe.yaml"), *trials, *seed],
                ["promote", "vae", "--iwae-k", str(args.iwae_k)],
                ["curve", "vae", "--sizes", "60000"],
            ]
            walls = [run_cli(step, root)["wall_s"] for step in steps]
            record = StudyRecord.load("vae-fashion-mnist", Project(root).open_storage())
            (curve,) = record.curves.values()
            (promoted,) = record.promotions.values()
            error = curve.rows[-1]["test_error"]
            result["parts"]["fashion"] = {
                "test_error_60000": error,
                "wall_s": walls,
                "latent_dim": curve.rows[-1]["latent_dim"],
                "promotion": promoted.test,
            }
            rows.append(
                [
                    "Fashion-MNIST, VAE latents + logistic regression, 60,000 images",
                    f"test error {error:.4f}",
                    "0.1744",
                    f"{sum(walls) / 60:.0f}",
                ]
            )
            progress(f"fashion: test error {error:.4f}")
        if "mnist" in args.parts:
            root = base / "mnist"
            root.mkdir(parents=True)
            data = ["--dataset", "mnist"]
            steps = [
                ["study", "vae", *data, "--space", str(SPACES / "vae_mnist.yaml"), *trials, *seed],
                ["promote", "vae", *data, "--iwae-k", str(args.iwae_k)],
            ]
            walls = [run_cli(step, root)["wall_s"] for step in steps]
            record = StudyRecord.load("vae-mnist", Project(root).open_storage())
            (promoted,) = record.promotions.values()
            test = promoted.test
            result["parts"]["mnist"] = {"promotion": test, "wall_s": walls, "model": promoted.model}
            rows.append(
                [
                    "binarized MNIST, conv VAE, 30 epochs: -ELBO / IWAE NLL (nats)",
                    f"{test['test_neg_elbo']:.2f} / {test['test_nll_iwae']:.2f} "
                    f"(k = {int(test['iwae_k'])})",
                    "102.7 / 86.76",
                    f"{sum(walls) / 60:.0f}",
                ]
            )
            progress(f"mnist: {test}")
    path = write_result("vae_quality", result, args.out, seeds=[args.seed])
    print_table(
        "the VAE against the reference reports", ["what", "vae-tune", "reference", "min"], rows
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
