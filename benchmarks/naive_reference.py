"""The yardstick: an AE study written the way the reference reports did it, against
`vae-tune study ae` on the same budget.

The naive study: torchvision's FashionMNIST with per-sample `ToTensor`, `DataLoader` (batch 128,
shuffled), optuna-integration's `MLflowCallback` (final values only), `MedianPruner`, an
in-memory Optuna storage. Same model class, search space, sampler seed and trial count as
vae-tune, whose study runs with `--pruner median` so both prune alike. Compared: wall time per
trial-epoch actually run (pruned trials run fewer epochs), data loading included.

    pip install -e '.[bench]'   # optuna-integration: the naive side's MLflow callback
    python benchmarks/naive_reference.py [--trials 4] [--epochs 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import optuna
import torch
import torch.nn.functional as F
import torchvision
from optuna_integration.mlflow import MLflowCallback
from torch.utils.data import DataLoader, random_split

from vae_tune.data.splits import default_data_dir
from vae_tune.models.nets import build_model
from vae_tune.models.train import make_optimizer
from vae_tune.project.folder import Project
from vae_tune.space.spaces import load_space
from vae_tune.studies.plan import StudyRequest
from vae_tune.usecases import runner

from common import REPO, print_table, progress, quiet, show, spread, write_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    quiet()

    naive, tuned = [], []
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "torchvision" / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for gz in (default_data_dir() / "fashion-mnist").glob("*.gz"):
            shutil.copy(gz, raw)  # torchvision checks the MD5s and unpacks them
        for repeat in range(args.repeats):
            naive.append(naive_study(raw.parent.parent, args.trials, args.epochs, repeat))
            tuned.append(vae_tune_study(Path(folder) / f"project{repeat}", args, repeat))
            n, t = naive[-1]["s_per_trial_epoch"], tuned[-1]["s_per_trial_epoch"]
            progress(f"repeat {repeat + 1}: s per trial-epoch: naive {n:.2f}, vae-tune {t:.2f}")

    result = {
        "trials": args.trials,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "naive": {k: spread([r[k] for r in naive]) for k in naive[0]},
        "vae_tune": {k: spread([r[k] for r in tuned]) for k in tuned[0]},
        # Paired per repeat: naive seconds per trial-epoch / vae-tune's.
        "speedup_per_trial_epoch": spread(
            [
                n["s_per_trial_epoch"] / t["s_per_trial_epoch"]
                for n, t in zip(naive, tuned, strict=True)
            ]
        ),
    }
    path = write_result("naive_reference", result, args.out, seeds=range(args.repeats))
    rows = [
        [name, show(r["wall_s"]), show(r["trial_epochs"]), show(r["s_per_trial_epoch"])]
        for name, r in (("naive reference", result["naive"]), ("vae-tune", result["vae_tune"]))
    ]
    rows.append(["speed-up", "", "", show(result["speedup_per_trial_epoch"]) + "x"])
    print_table(
        f"AE study, {args.trials} trials x {args.epochs} epochs, median pruning "
        f"(median [min, max] of {args.repeats})",
        ["study", "wall s", "trial-epochs", "s per trial-epoch"],
        rows,
    )
    print(f"wrote {path}")


def naive_study(root: Path, n_trials: int, epochs: int, seed: int) -> dict[str, float]:
    """The reference reports' way, timed from reading the dataset to the end of the study."""
    started = time.perf_counter()
    to_tensor = torchvision.transforms.ToTensor()
    full = torchvision.datasets.FashionMNIST(
        str(root), train=True, transform=to_tensor, download=True
    )
    train_set, val_set = random_split(
        full, [48_000, 12_000], generator=torch.Generator().manual_seed(seed)
    )
    space = load_space(REPO / "search_spaces" / "ae.yaml")

    def objective(trial: optuna.Trial) -> float:
        config = space.config({**space.sample(trial), "train.epochs": epochs})
        torch.manual_seed(seed + trial.number)
        model = build_model("ae", config.model)
        optimizer = make_optimizer(model, config.train)
        train_loader = DataLoader(train_set, batch_size=config.train.batch_size, shuffle=True)
        val_loader = DataLoader(val_set, batch_size=config.train.batch_size)
        for epoch in range(1, epochs + 1):
            model.train()
            for x, _ in train_loader:
                loss = F.mse_loss(model(x), x)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            model.eval()
            total = 0.0
            with torch.no_grad():
                for x, _ in val_loader:
                    total += F.mse_loss(model(x), x, reduction="sum").item()
            value = total / (len(val_set) * 28 * 28)
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    tracking = f"sqlite:///{root / f'naive-{seed}.db'}"
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=seed), pruner=optuna.pruners.MedianPruner()
    )
    callback = MLflowCallback(tracking_uri=tracking, metric_name="val_loss")
    study.optimize(objective, n_trials=n_trials, callbacks=[callback])
    return _timing(study, time.perf_counter() - started)


def vae_tune_study(root: Path, args: argparse.Namespace, seed: int) -> dict[str, float]:
    """`vae-tune study ae --n-trials T --epochs E --pruner median` in a fresh project folder."""
    root.mkdir()
    started = time.perf_counter()
    request = StudyRequest(
        "ae", n_trials=args.trials, epochs=args.epochs, pruner="median", seed=seed
    )
    project = Project(root, device="cpu")
    summary = runner.study(request, project, log=lambda line: None).summary
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name=summary.study_name, storage=project.open_storage())
    return _timing(study, wall)


def _timing(study: optuna.Study, wall: float) -> dict[str, float]:
    trial_epochs = sum(len(t.intermediate_values) for t in study.trials)
    return {"wall_s": wall, "trial_epochs": trial_epochs, "s_per_trial_epoch": wall / trial_epochs}


if __name__ == "__main__":
    main()
