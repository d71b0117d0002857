"""`vae-tune pipeline`: the budget planned from measured costs, kept, resumed; bad budgets
refused before anything is written."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from tests.helpers import REPO, invoke, mlflow_client, promotion_runs
from tests.test_datasets import write_folder
from vae_tune.data.splits import load_splits
from vae_tune.errors import VaeTuneError
from vae_tune.evaluation.tasks import AutoencoderTask
from vae_tune.project.folder import Project
from vae_tune.project.storage import open_storage
from vae_tune.promotion.promote import Candidate, retrain_on_train_and_validation
from vae_tune.record import StudyRecord
from vae_tune.space.spaces import load_space
from vae_tune.usecases.budget import (
    ENSEMBLE_HEAD_TRIALS,
    ENSEMBLE_MEMBERS,
    RETRAIN_SCALE,
    Costs,
    choose_plan,
    least_budget,
    parse_budget,
    plan_budget,
)
from vae_tune.usecases.pipeline import PipelineRequest, measure_costs

SUBSET = ["--train-size", "2000", "--val-size", "1000"]
# A 2-core machine's measured costs, roughly: an AE epoch 11 s, a fine-tuning epoch 5.5 s,
# loading the data 2 s, the baselines 24 s.
COSTS = Costs(
    encoder_epoch_s=11.0,
    encoder_epochs=4,
    head_epoch_s=5.5,
    head_epochs=25,
    load_s=2.0,
    baselines_s=24.0,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30m", 1800),
        ("90s", 90),
        ("1.5h", 5400),
        ("1h30m", 5400),
        ("8", 480),
        (" 2m 30s", 150),
        ("least", None),
    ],
)
def test_budget_parses_durations(text: str, seconds: float) -> None:
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["0", "0m", "banana", "5x", "m", "-3m", ""])
def test_bad_budgets_are_refused(text: str) -> None:
    with pytest.raises(VaeTuneError, match="--budget"):
        parse_budget(text)


def test_plan_keeps_both_promotions_inside_the_budget() -> None:
    for budget in (480, 600, 1800, 3600):
        plan = plan_budget(budget, COSTS)
        head_trial = plan.head_epochs * COSTS.head_epoch_s
        reserved = (
            plan.promote_encoder_s + plan.promote_head_s + 2 * plan.overhead_s + plan.baselines_s
        )
        head_study = budget - reserved - plan.encoder_study_s
        assert plan.encoder_study_s >= COSTS.encoder_epochs * COSTS.encoder_epoch_s
        assert head_study >= head_trial
        assert plan.encoder_study_s + head_study + reserved == pytest.approx(budget)
    # Short budgets cut the head trials' epochs; long ones run the space's own.
    assert plan_budget(480, COSTS).head_epochs < plan_budget(600, COSTS).head_epochs <= 25
    assert plan_budget(1800, COSTS).head_epochs == 25


def test_long_budgets_promote_the_head_champion_averaged_over_seeds() -> None:
    """The ensemble's extra retrains are reserved, and taken from the head study only where it
    keeps ENSEMBLE_HEAD_TRIALS full-length trials: a budget short of three seeds takes two,
    shorter ones promote one model."""
    single, pair, averaged = (plan_budget(b, COSTS) for b in (1200, 1300, 1800))
    assert (single.head_members, pair.head_members) == (1, 2)
    assert averaged.head_members == ENSEMBLE_MEMBERS
    assert single.head_epochs == pair.head_epochs == averaged.head_epochs == 25
    retrain = 25 * COSTS.head_epoch_s * RETRAIN_SCALE
    assert pair.promote_head_s - single.promote_head_s == pytest.approx(retrain)
    extra = (ENSEMBLE_MEMBERS - 1) * retrain
    assert averaged.promote_head_s - single.promote_head_s == pytest.approx(extra)
    for budget, plan in ((1300, pair), (1800, averaged)):
        head_study = budget - plan.reserved_s - plan.encoder_study_s
        assert head_study >= ENSEMBLE_HEAD_TRIALS * 25 * COSTS.head_epoch_s
    # 1,300 s would not leave the head study its full trials beside a third seed.
    assert plan_budget(600, COSTS).head_members == 1
    assert "3 seeds" in averaged.describe(COSTS) and "2 seeds" in pair.describe(COSTS)
    assert "seeds" not in single.describe(COSTS)


@pytest.mark.parametrize(("seconds_left", "trained"), [(None, 3), (3600.0, 3), (0.0, 1)])
def test_members_past_the_first_are_trained_only_while_they_end_in_time(
    real_data: Path, seconds_left: float | None, trained: int
) -> None:
    """The head study may run slower than the pipeline measured, or leave time unused: the
    promotion trains the seeds that end by its deadline, judged on the slowest member so far,
    and always the first."""
    splits = load_splits("fashion-mnist", real_data, train_size=200, val_size=100)
    space = load_space(REPO / "search_spaces" / "ae.yaml")
    config = space.typical_config()
    trial = optuna.trial.create_trial(value=0.0, params={}, distributions={})
    lines: list[str] = []
    deadline = None if seconds_left is None else time.time() + seconds_left
    models, _ = retrain_on_train_and_validation(
        Candidate(trial, config, [0.0]),
        AutoencoderTask("ae", splits),
        1,
        [1, 2, 3],
        lines.append,
        deadline,
    )
    assert len(models) == trained
    assert sum(line.startswith("  member") and "(seed" in line for line in lines) == trained
    assert any("seed(s) averaged" in line for line in lines) == (trained < 3)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("dataset", "train_size", "val_size", "scale"),
    [("fashion-mnist", 5000, 12_000, 3.4), ("folder", None, 300, 3.0)],
)
def test_promotions_are_planned_on_the_images_they_train_on(
    tmp_path: Path,
    real_data: Path,
    dataset: str,
    train_size: int | None,
    val_size: int,
    scale: float,
) -> None:
    """A promotion retrains on train + validation: with --train-size 5000 that is 3.4 times a
    trial's images, on a folder of 400 images with 300 for validation 4 times. The plan's
    reserve is sized from the images the pipeline measured on, not from Fashion-MNIST's
    default 1.25."""
    if dataset == "folder":
        write_folder(tmp_path / "pictures", n=400, test_n=10, channels=1, side=28)
        dataset = f"folder:{tmp_path / 'pictures'}"
        scale = 400 / 100
    request = PipelineRequest(
        dataset=dataset, data_dir=real_data, train_size=train_size, val_size=val_size
    )
    project = Project(tmp_path)
    encoder_space = load_space(REPO / "search_spaces" / "ae.yaml")
    head_space = load_space(REPO / "search_spaces" / "mlp.yaml")
    costs = measure_costs(request, project, encoder_space, head_space, 4, 25)
    assert costs.retrain_scale == pytest.approx(scale)
    plan = plan_budget(3600, costs)
    retrain = costs.encoder_epochs * costs.encoder_epoch_s * scale
    assert plan.promote_encoder_s >= retrain
    head_retrains = plan.head_members * plan.head_epochs * costs.head_epoch_s * scale
    assert plan.promote_head_s >= head_retrains
    # What the plan keeps for the studies and what it reserves add up to the budget.
    head_study = 3600 - plan.reserved_s - plan.encoder_study_s
    assert head_study >= ENSEMBLE_HEAD_TRIALS * plan.head_epochs * costs.head_epoch_s or (
        plan.head_members == 1
    )
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "pictures"])  # measuring writes nothing


def test_without_retrains_the_promotions_reserve_their_evaluations_alone() -> None:
    """`--no-retrain`: no promotion trains, so the head study gets that time (longer trials at
    10 minutes), its members are its own trials (up to ENSEMBLE_MEMBERS, none reserved as
    retrains), and the least budget shrinks by both retrains."""
    retrained, kept = plan_budget(600, COSTS), plan_budget(600, COSTS, retrain=False)
    assert kept.head_epochs > retrained.head_epochs
    assert (kept.retrain, kept.head_members) == (False, ENSEMBLE_MEMBERS)
    encoder_retrain = COSTS.encoder_epochs * COSTS.encoder_epoch_s * RETRAIN_SCALE
    assert retrained.promote_encoder_s - kept.promote_encoder_s == pytest.approx(encoder_retrain)
    # The head's promotion: its baselines on the training split and one epoch's worth of
    # passes over validation to choose the members.
    assert kept.promote_head_s == pytest.approx(
        COSTS.baselines_s + COSTS.head_epoch_s + kept.overhead_s
    )
    assert kept.head_tail_s == pytest.approx(COSTS.baselines_s + kept.overhead_s)
    assert least_budget(COSTS, retrain=False) < least_budget(COSTS) - encoder_retrain
    assert "no retrains" in kept.describe(COSTS) and "no retrains" not in retrained.describe(COSTS)
    for budget in (300, 600, 1800):
        plan = plan_budget(budget, COSTS, retrain=False)
        head_study = budget - plan.reserved_s - plan.encoder_study_s
        assert head_study >= plan.head_epochs * COSTS.head_epoch_s
    assert plan_budget(1800, COSTS, retrain=False).head_epochs == 25


def test_the_planner_retrains_only_where_the_head_keeps_its_full_epochs() -> None:
    """Left to the planner: retrains at 30 minutes (the head's trials run their 25 epochs
    beside them), none at 10 (they would cut the trials) nor where only the plan without them
    fits; asked for, either way as asked."""
    assert choose_plan(1800, COSTS) == plan_budget(1800, COSTS)
    assert choose_plan(1800, COSTS).head_epochs == 25
    assert plan_budget(600, COSTS).head_epochs < 25
    assert choose_plan(600, COSTS) == plan_budget(600, COSTS, retrain=False)
    only_without = least_budget(COSTS, retrain=False)
    assert only_without < least_budget(COSTS)
    assert choose_plan(only_without, COSTS).retrain is False
    assert choose_plan(600, COSTS, retrain=True) == plan_budget(600, COSTS)
    assert choose_plan(1800, COSTS, retrain=False) == plan_budget(1800, COSTS, retrain=False)


def test_plan_scales_with_the_machine() -> None:
    slow = replace(COSTS, encoder_epoch_s=33.0, head_epoch_s=16.5)
    assert plan_budget(1800, slow).head_epochs < plan_budget(1800, COSTS).head_epochs


def test_plan_counts_the_fixed_costs_in_seconds_not_epochs() -> None:
    """On a GPU the epochs shrink tenfold and the CPU's baselines do not: the plan still
    reserves them whole, so the head study stops in time for them."""
    gpu = replace(COSTS, encoder_epoch_s=1.1, head_epoch_s=0.55)
    plan = plan_budget(300, gpu)
    assert plan.baselines_s == 24.0
    assert plan.promote_head_s > 24.0 + plan.overhead_s  # its own fit of the baselines
    assert least_budget(gpu) > 2 * gpu.baselines_s
    assert least_budget(replace(gpu, baselines_s=0.0)) < least_budget(gpu) - 48


def test_a_budget_too_small_for_one_trial_names_the_least() -> None:
    with pytest.raises(VaeTuneError, match=r"too small for one trial .* give at least \d+:\d\d"):
        plan_budget(120, COSTS)
    least = least_budget(COSTS)
    assert plan_budget(least, COSTS).head_epochs >= 3  # the least is enough
    slow_head = replace(COSTS, head_epoch_s=60.0)  # a head trial over 3 encoder trials
    assert plan_budget(least_budget(slow_head), slow_head).head_epochs >= 3
    with pytest.raises(VaeTuneError, match=_clock_pattern(least)):
        plan_budget(0.9 * least, COSTS)


def _clock_pattern(seconds: float) -> str:
    seconds = round(seconds)
    return f"give at least {seconds // 60}:{seconds % 60:02d}"


@pytest.mark.parametrize(
    ("budget", "message"),
    [("0", "more than zero"), ("banana", "give a duration"), ("20s", "too small for one trial")],
)
def test_bad_budget_writes_nothing(tmp_path: Path, budget: str, message: str) -> None:
    result = invoke(tmp_path, "pipeline", "--budget", budget, *SUBSET)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []  # no store, no study, no report


def promotion_accuracy(root: Path, study: str) -> float:
    client = mlflow_client(root)
    experiment = client.get_experiment_by_name(study)
    [run] = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`vae_tune.role` = 'promotion'"
    )
    return run.data.metrics["test_accuracy"]


def assert_within_budget(output: str) -> None:
    """The wall time against the budget, both of this run: a ratio that holds on a slow
    machine as on a fast one, since the plan is made from epochs measured on it (20 % for what
    varies between measuring an epoch and running the stages)."""
    found = re.search(r"pipeline: ([\d.]+) min of a ([\d.]+) min budget", output)
    assert found is not None, output
    spent, budget = map(float, found.groups())
    assert spent <= 1.2 * budget, output


@pytest.mark.slow
def test_pipeline_keeps_its_budget_and_resumes(tmp_path: Path) -> None:
    """At the least budget this machine needs (measured by the pipeline itself), so the test
    asks the same of a fast machine and of one half as fast."""
    result = invoke(tmp_path, "pipeline", "--budget", "least", *SUBSET)
    assert result.exit_code == 0, result.output
    assert "the least this machine needs for every stage" in result.output
    for stage in ("1/4 study ae", "2/4 promote ae", "3/4 study mlp", "4/4 promote mlp"):
        assert f"[{stage} | " in result.output  # progress names the stage and the time left
    assert (tmp_path / "reports" / "fashion-mnist.md").is_file()
    # One encoder trial and one 3-epoch head trial on 2,000 images: well above chance (0.1).
    assert promotion_accuracy(tmp_path, "mlp-ae-fashion-mnist") > 0.5
    storage = open_storage(str(tmp_path / "studies" / "optuna.journal"))
    for name in ("ae-fashion-mnist", "mlp-ae-fashion-mnist"):
        record = StudyRecord(optuna.load_study(study_name=name, storage=storage))
        assert record.stop_reason is not None and record.stop_reason.startswith("budget: ")
        assert record.promotions
    # The final table: each stage's champion and test metric, and the baselines.
    assert "test_accuracy" in result.output and "logreg_pixels" in result.output
    assert_within_budget(result.output)

    again = invoke(tmp_path, "pipeline", "--budget", "least", *SUBSET)
    assert again.exit_code == 0, again.output
    assert again.output.count("skipped (done before)") == 4
    assert "the test split is not read again" in again.output


@pytest.mark.slow
def test_the_head_promotion_averages_the_seeds_that_end_in_time(tmp_path: Path) -> None:
    """Three minutes on 2,000 images: the plan reserves up to three seeds of the head's
    champion, and the promotion trains those that end in time, however fast the machine. The
    registered model averages what was trained, and mirrors (Fashion-MNIST's augmentation
    does)."""
    result = invoke(tmp_path, "pipeline", "--budget", "3m", "--retrain", *SUBSET)
    assert result.exit_code == 0, result.output
    trained = len(re.findall(rf"member \d of {ENSEMBLE_MEMBERS} \(seed", result.output))
    assert 1 <= trained <= ENSEMBLE_MEMBERS
    [run] = promotion_runs(tmp_path, "mlp-ae-fashion-mnist")
    assert run.data.tags["promotion.members"] == str(trained)
    assert run.data.tags["promotion.mirrored"] == "true"
    assert ("seed(s) averaged" in result.output) == (trained < ENSEMBLE_MEMBERS)
    assert_within_budget(result.output)


@pytest.mark.slow
def test_a_pipeline_without_retrains_promotes_its_trials_own_models(tmp_path: Path) -> None:
    """Two minutes on 2,000 images, `--no-retrain`: neither promotion retrains, both record
    it, and the head's registered model averages its own champion with the trials validation
    took (itself first)."""
    result = invoke(tmp_path, "pipeline", "--budget", "2m", "--no-retrain", *SUBSET)
    assert result.exit_code == 0, result.output
    assert "no retrains: the trials' own models" in result.output
    assert "retraining trial" not in result.output and "no retrain: trial" in result.output
    for study in ("ae-fashion-mnist", "mlp-ae-fashion-mnist"):
        [run] = promotion_runs(tmp_path, study)
        assert run.data.tags["promotion.retrained"] == "false"
    [run] = promotion_runs(tmp_path, "mlp-ae-fashion-mnist")
    storage = open_storage(str(tmp_path / "studies" / "optuna.journal"))
    record = StudyRecord(optuna.load_study(study_name="mlp-ae-fashion-mnist", storage=storage))
    [(champion, promoted)] = record.promotions.items()
    assert promoted.retrained is False and promoted.member_trials[0] == champion
    assert run.data.tags["promotion.members"] == str(len(promoted.member_trials))
    assert_within_budget(result.output)


@pytest.mark.slow
def test_interrupted_pipeline_tops_up_its_study(tmp_path: Path) -> None:
    """A study stopped by Ctrl-C has no stop reason: the next pipeline continues it."""
    first = invoke(tmp_path, "study", "ae", "--n-trials", "1", "--epochs", "4", *SUBSET)
    assert first.exit_code == 0, first.output
    result = invoke(tmp_path, "pipeline", "--budget", "least", *SUBSET)
    assert result.exit_code == 0, result.output
    assert "study ae-fashion-mnist: 1 trials finished, running" in result.output
    assert "ae-fashion-mnist ended before" not in result.output
