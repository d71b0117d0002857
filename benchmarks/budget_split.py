"""Where a pipeline's budget pays, judged on the validation split alone (issue 44, point 3).

Each arm runs `vae-tune pipeline --budget B` in a fresh project folder, in its own process as a
user runs it, with one of the planner's choices changed (usecases/budget.py), then scores what
that pipeline built, trained again on the training split alone: the head study's promoted trial
retrained for the epochs it was chosen at, once per seed its promotion averaged, their
probabilities averaged (each image with its mirror where the promotion mirrored), on the
validation split. The pipeline's test accuracy is recorded beside it and never used to choose.
Arms:

- planned: the planner as it ships (ENCODER_SHARE of the study time to the encoder study;
  retrains only where the head's trials keep their full epochs beside them, the champion
  then averaged over up to ENSEMBLE_MEMBERS seeds);
- retrains: `pipeline --retrain`, both promotions retrained whatever the budget (the planner
  before issue 44's budget split: "planned" in its records);
- encoder-half: half the study time to the encoder study (more encoder trials);
- one-seed: no averaged seeds, their time left to the head study (more head trials);
- long-heads: head trials of 1.5x the head space's epochs (fewer, longer);
- one-head-trial: with retrains, head epochs cut only as far as one head trial needs, not
  three (short budgets cut them to give the head study WANTED_HEAD_TRIALS);
- no-retrain: `pipeline --no-retrain`, the promotions' retrains left to the studies, the head's
  champion its trial's own model averaged with the next-best trials' where validation rose
  (scored here as promoted: those models, already trained on the training split alone).

    python benchmarks/budget_split.py [--budget 10m] [--seeds 0] [--arms planned,one-seed]
    python benchmarks/budget_split.py --budget 2m --train-size 2000 --val-size 1000  # a check

Each arm of a seed costs the budget plus the validation retrains (one head training each);
run it one arm or one seed at a time to keep each run short (a record per run).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from vae_tune.evaluation.tasks import HeadTask, retrain
from vae_tune.models.train import predict
from vae_tune.project.folder import Project
from vae_tune.promotion.kept_members import kept_model
from vae_tune.promotion.promote import averaged
from vae_tune.record import StudyRecord
from vae_tune.record.trial import TrialRecord
from vae_tune.space.stages import HEAD
from vae_tune.usecases import budget, pipeline
from vae_tune.usecases.runner import StudyRef, finished_study

from common import REPO, print_table, progress, quiet, run_cli, write_result

AS_CLI = "--as-cli"  # this script started as an arm's `vae-tune`, its planner changed
ARMS: dict[str, dict[str, Any]] = {
    "planned": {},
    "retrains": {"options": ["--retrain"]},
    "encoder-half": {"encoder_share": 0.5},
    "one-seed": {"members": 1},
    "long-heads": {"head_epochs_scale": 1.5},
    "one-head-trial": {"wanted_head_trials": 1, "options": ["--retrain"]},
    "no-retrain": {"options": ["--no-retrain"]},
}


@contextmanager
def planner(
    encoder_share: float | None = None,
    members: int | None = None,
    wanted_head_trials: int | None = None,
) -> Iterator[None]:
    """The planner's constants changed for one pipeline (the modules read them when called)."""
    saved = (
        budget.ENCODER_SHARE,
        budget.ENSEMBLE_MEMBERS,
        pipeline.ENSEMBLE_MEMBERS,
        budget.WANTED_HEAD_TRIALS,
    )
    try:
        if encoder_share is not None:
            budget.ENCODER_SHARE = encoder_share
        if members is not None:
            budget.ENSEMBLE_MEMBERS = pipeline.ENSEMBLE_MEMBERS = members
        if wanted_head_trials is not None:
            budget.WANTED_HEAD_TRIALS = wanted_head_trials
        yield
    finally:
        (
            budget.ENCODER_SHARE,
            budget.ENSEMBLE_MEMBERS,
            pipeline.ENSEMBLE_MEMBERS,
            budget.WANTED_HEAD_TRIALS,
        ) = saved


def longer_heads(root: Path, scale: float) -> int:
    """The shipped head space with `scale` times its epochs, as this project's own."""
    doc = yaml.safe_load((REPO / "search_spaces" / "mlp.yaml").read_text())
    epochs = round(doc["fixed"]["train.epochs"] * scale)
    doc["fixed"]["train.epochs"] = epochs
    (root / "search_spaces").mkdir(parents=True, exist_ok=True)
    (root / "search_spaces" / "mlp.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return epochs


def on_validation(root: Path, seed: int) -> dict[str, Any]:
    """The head promotion's classifier rebuilt on the training split: its trial, epochs,
    members and mirroring, scored on validation."""
    project = Project(root)
    storage, tracker = project.open_stores()
    ref = StudyRef(HEAD.name)
    record, task = finished_study(ref, project, storage, tracker, progress)
    assert isinstance(task, HeadTask)
    number, promoted = next(iter(record.promotions.items()))
    trial = record.live.trials[number]
    config, epochs = record.replay(trial), TrialRecord(trial).best_epoch
    started = time.perf_counter()
    if promoted.retrained:
        seeds = [1000 * seed + member for member in range(promoted.members)]
        models = [retrain(task, config, s, epochs)[0] for s in seeds]
    else:  # the promoted models themselves: trained on the training split alone
        trials = [record.live.trials[n] for n in promoted.member_trials]
        models = [kept_model(record, task, tracker, t) for t in trials]
    seconds = time.perf_counter() - started
    if len(models) == 1 and not promoted.mirrored:
        classifier = task.classifier(models[0])
    else:
        classifier = averaged(models, promoted.mirrored, task)
    val_x, val_y = task.splits.val_x, task.splits.val_y
    return {
        "trial": number,
        "epochs": epochs,
        "members": promoted.members,
        "mirrored": promoted.mirrored,
        "retrained": promoted.retrained,
        "member_trials": promoted.member_trials,
        "trial_val_accuracy": trial.value,
        "val_accuracy": (predict(classifier, val_x) == val_y).float().mean().item(),
        "retrain_s": seconds,
        "head_trials": len(record.live.trials),
        "test_accuracy": promoted.test["test_accuracy"],
    }


def run_arm(arm: str, seed: int, folder: Path, options: list[str]) -> dict[str, Any]:
    """One pipeline as the CLI runs it, in its own process (the planner's measurements of this
    machine taken there, as a user's are), then its classifier scored on validation."""
    settings = dict(ARMS[arm])
    arm_options = settings.pop("options", [])
    root = folder / f"{arm}-seed{seed}"
    root.mkdir()
    head_epochs = None
    if (scale := settings.pop("head_epochs_scale", None)) is not None:
        head_epochs = longer_heads(root, scale)
    entry = [__file__, AS_CLI, json.dumps(settings)]
    step = run_cli(["pipeline", "--seed", str(seed), *options, *arm_options], root, entry=entry)
    plan = re.search(r"^plan: (.*)$", (root / "output.log").read_text(), re.MULTILINE)
    encoder_study = StudyRecord.load("ae-fashion-mnist", Project(root).open_storage())
    figures = {
        "arm": arm,
        "seed": seed,
        "plan": plan.group(1) if plan else None,
        "pipeline_wall_s": step["wall_s"],
        "encoder_trials": len(encoder_study.live.trials),
        "head_epochs": head_epochs,
        **on_validation(root, seed),
    }
    progress(
        f"{arm} seed {seed}: validation {100 * figures['val_accuracy']:.2f} %, "
        f"{figures['encoder_trials']} encoder / {figures['head_trials']} head trials"
    )
    return figures


def as_cli(settings: str) -> None:
    """`vae-tune ARGS` with the planner changed: this script run as the arm's own process."""
    from vae_tune.cli import main as cli

    with planner(**json.loads(settings)):
        cli()


def main() -> None:
    quiet()
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", default="10m")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--train-size", type=int, help="fewer training images (a quick check)")
    parser.add_argument("--val-size", type=int, default=12_000)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    arms = args.arms.split(",")
    if unknown := [a for a in arms if a not in ARMS]:
        parser.error(f"--arms {','.join(unknown)}: choose from {', '.join(ARMS)}")
    options = ["--budget", args.budget, "--val-size", str(args.val_size)]
    if args.train_size is not None:
        options += ["--train-size", str(args.train_size)]
    with tempfile.TemporaryDirectory() as folder:
        runs = [run_arm(arm, seed, Path(folder), options) for seed in seeds for arm in arms]
    path = write_result(
        "budget_split",
        {"budget": args.budget, "split": "validation (test beside it)", "runs": runs},
        seeds=seeds,
    )
    rows = []
    for arm in arms:
        mine = [r for r in runs if r["arm"] == arm]
        values = [100 * r["val_accuracy"] for r in mine]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(
            [
                arm,
                f"{statistics.fmean(values):.2f} +- {std:.2f}",
                ", ".join(f"{v:.2f}" for v in values),
                ", ".join(f"{r['encoder_trials']}/{r['head_trials']}x{r['members']}" for r in mine),
                ", ".join(f"{100 * r['test_accuracy']:.2f}" for r in mine),
            ]
        )
    print_table(
        f"--budget {args.budget}, chosen on validation (seeds {args.seeds})",
        ["arm", "val accuracy %", "runs", "encoder/head trials x seeds", "test % (not chosen on)"],
        rows,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == AS_CLI:
        settings = sys.argv[2]
        sys.argv = ["vae-tune", *sys.argv[3:]]
        as_cli(settings)
    else:
        main()
