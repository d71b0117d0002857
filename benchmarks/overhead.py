"""vae-tune's overhead: a trial inside a real study against a bare torch loop of the same model.

Both train the same config on the same in-memory Fashion-MNIST tensors (48,000 / 12,000) in this
process, interleaved, so machine noise hits both alike. The vae-tune side is a whole trial of a
real study (journal storage, SQLite MLflow store, per-epoch reports, logging and progress lines):
its wall time from Optuna's trial start to end, model building and run bookkeeping included.

    python benchmarks/overhead.py [--stages ae,vae] [--epochs 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna
import torch
from mlflow.tracking import MlflowClient

from vae_tune.data.defaults import data_defaults
from vae_tune.data.splits import Splits, load_splits
from vae_tune.models.config import build_config
from vae_tune.models.nets import build_model
from vae_tune.project.folder import Project
from vae_tune.space.spaces import load_space
from vae_tune.studies.plan import StudyRequest
from vae_tune.usecases import runner

from common import REPO, fixed_space, print_table, progress, quiet, show, spread, write_result

CONFIG = {  # the space file's fixed values, and mid-range values of what it searches
    "model.latent_dim": 64,
    "model.dropout": 0.1,
    "train.optimizer": "adam",
    "train.lr": 1.0e-3,
    "train.weight_decay": 1.0e-5,
    "train.schedule": "constant",  # the bare loop has no scheduler
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stages", default="ae,vae")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    quiet()

    splits = load_splits("fashion-mnist")
    rows, result = [], {"epochs": args.epochs, "repeats": args.repeats, "stages": {}}
    for stage in args.stages.split(","):
        values = {**load_space(REPO / "search_spaces" / f"{stage}.yaml").fixed, **CONFIG}
        values["train.epochs"] = args.epochs
        values |= data_defaults(values, splits)  # `auto` decided as a study decides it
        bare, tuned = [], []
        for repeat in range(args.repeats):
            bare.append(bare_loop(stage, values, splits, seed=repeat))
            tuned.append(vae_tune_trial(stage, values, seed=repeat))
            progress(
                f"{stage} repeat {repeat + 1}: bare {bare[-1]['wall_s']:.1f} s, "
                f"vae-tune {tuned[-1]['wall_s']:.1f} s"
            )
        stats = {
            "bare_wall_s": spread([b["wall_s"] for b in bare]),
            "vae_tune_wall_s": spread([t["wall_s"] for t in tuned]),
            "bare_train_images_per_s": spread([b["train_images_per_s"] for b in bare]),
            "bare_eval_images_per_s": spread([b["eval_images_per_s"] for b in bare]),
            "vae_tune_train_images_per_s": spread([t["train_images_per_s"] for t in tuned]),
            "vae_tune_eval_images_per_s": spread([t["eval_images_per_s"] for t in tuned]),
            # Paired per repeat: (vae-tune trial wall / bare loop wall) - 1.
            "overhead": spread(
                [t["wall_s"] / b["wall_s"] - 1 for b, t in zip(bare, tuned, strict=True)]
            ),
        }
        result["stages"][stage] = stats
        rows.append(
            [
                stage,
                show(stats["bare_wall_s"]),
                show(stats["vae_tune_wall_s"]),
                show(stats["bare_train_images_per_s"]),
                show(stats["vae_tune_train_images_per_s"]),
                show(stats["bare_eval_images_per_s"]),
                show(stats["vae_tune_eval_images_per_s"]),
                f"{stats['overhead']['median']:+.1%} [{stats['overhead']['min']:+.1%}, "
                f"{stats['overhead']['max']:+.1%}]",
            ]
        )
    path = write_result("overhead", result, args.out, seeds=range(args.repeats))
    print_table(
        f"Trial of {args.epochs} epochs: vae-tune vs a bare torch loop (median [min, max] of "
        f"{args.repeats})",
        [
            "stage",
            "bare s",
            "vae-tune s",
            "bare train img/s",
            "vae-tune train img/s",
            "bare eval img/s",
            "vae-tune eval img/s",
            "overhead",
        ],
        rows,
    )
    print(f"wrote {path}")


def bare_loop(stage: str, values: dict, splits: Splits, seed: int) -> dict[str, float]:
    """The same model and optimisation in the plainest loop: index, forward, backward, step.
    No augmentation or schedule: the configs here use neither (CONFIG)."""
    config = build_config(values)
    started = time.perf_counter()
    torch.manual_seed(seed)
    # The same layout and evaluation batch as vae-tune's loop: this measures its machinery,
    # not its speed-ups (benchmarks/naive_reference.py measures those).
    model = build_model(stage, config.model).to(memory_format=torch.channels_last)
    cfg = config.train
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n, train_s, eval_s = len(splits.train_x), 0.0, 0.0
    for _ in range(cfg.epochs):
        epoch_start = time.perf_counter()
        model.train()
        for idx in torch.randperm(n).split(cfg.batch_size):
            loss = model.loss_terms(splits.train_x[idx])["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        loss.item()
        eval_start = time.perf_counter()
        model.eval()
        with torch.inference_mode():
            for batch in splits.val_x.split(512):
                model.loss_terms(batch)["loss"].item()
        train_s += eval_start - epoch_start
        eval_s += time.perf_counter() - eval_start
    return {
        "wall_s": time.perf_counter() - started,
        "train_images_per_s": n * cfg.epochs / train_s,
        "eval_images_per_s": len(splits.val_x) * cfg.epochs / eval_s,
    }


def vae_tune_trial(stage: str, values: dict, seed: int) -> dict[str, float]:
    """One trial of a real `vae-tune study` in a throwaway project folder."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        space = fixed_space(stage, values, root)
        request = StudyRequest(stage, n_trials=1, space=space, seed=seed)
        project = Project(root, device="cpu")
        summary = runner.study(request, project, log=lambda line: None).summary
        study = optuna.load_study(study_name=summary.study_name, storage=project.open_storage())
        trial = study.trials[0]
        client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")

        def per_s(name: str) -> float:  # over all epochs, as the bare loop counts them
            history = client.get_metric_history(trial.user_attrs["mlflow_run_id"], name)
            return len(history) / sum(1 / m.value for m in history)

        return {
            "wall_s": (trial.datetime_complete - trial.datetime_start).total_seconds(),
            "train_images_per_s": per_s("train_images_per_s"),
            "eval_images_per_s": per_s("val_images_per_s"),
        }


if __name__ == "__main__":
    main()
