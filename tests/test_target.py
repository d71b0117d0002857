"""`--target`: a study stops starting trials once a complete trial reaches the value; the reason
is on the study (status, summary, dashboard note) and its MLflow parent run."""

from __future__ import annotations

from pathlib import Path

import optuna
import optuna_dashboard
import pytest
from optuna.trial import TrialState, create_trial

from tests.helpers import FINISHED, TINY, invoke, load_study, runs_of
from vae_tune.errors import SpaceError, VaeTuneError
from vae_tune.record import StudyRecord
from vae_tune.space.options import CommandLine, resolve
from vae_tune.space.spaces import load_space, parse_space
from vae_tune.studies.stopping import target_reached

REPO = Path(__file__).resolve().parent.parent


def study_of(values: list[float], direction: str) -> optuna.Study:
    study = optuna.create_study(direction=direction)
    for value in values:
        study.add_trial(create_trial(value=value))  # a test's own study: no vae-tune trials
    return study


def test_target_is_reached_in_the_metrics_direction() -> None:
    assert target_reached(study_of([0.3, 0.2, 0.1], "minimize"), 0.2) is not None
    assert "trial 1 reached" in (target_reached(study_of([0.3, 0.2], "minimize"), 0.2) or "")
    assert target_reached(study_of([0.3, 0.2], "minimize"), 0.19) is None
    assert "trial 1 reached" in (target_reached(study_of([0.8, 0.9], "maximize"), 0.9) or "")
    assert target_reached(study_of([0.8, 0.9], "maximize"), 0.91) is None


def test_a_multi_objective_study_refuses_a_target() -> None:
    space = load_space(REPO / "search_spaces" / "vae.yaml")
    with pytest.raises(VaeTuneError, match="--target 5 needs one objective"):
        resolve(CommandLine(objective="elbo,probe", target=5.0), space)
    _, options = resolve(CommandLine(target=5.0), space)
    assert options.extras.target == 5.0


def test_the_space_file_gives_a_target_and_the_command_line_wins() -> None:
    text = (REPO / "search_spaces" / "ae.yaml").read_text()
    space = parse_space(text.replace("study:\n", "study:\n  target: 0.02\n"), "t.yaml")
    assert resolve(CommandLine(), space)[1].extras.target == 0.02
    assert resolve(CommandLine(target=0.5), space)[1].extras.target == 0.5
    with pytest.raises(SpaceError, match=r"t\.yaml: study\.target: must be a number"):
        parse_space(text.replace("study:\n", "study:\n  target: low\n"), "t.yaml")


@pytest.mark.slow
def test_target_ends_the_study_with_the_reason_in_both_stores(tmp_path: Path) -> None:
    # Any reconstruction error of images in [0, 1] is under 0.5: the first trial reaches it.
    result = invoke(tmp_path, "study", "ae", *TINY, "--n-trials", "3", "--target", "0.5")
    assert result.exit_code == 0, result.output
    study = load_study(tmp_path)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE], "no trial starts after it"
    reason = StudyRecord(study).stop_reason
    assert reason == f"target: trial 0 reached val_loss {trials[0].value:.5g} (--target 0.5)"
    _, [parent], _ = runs_of(tmp_path)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["stop_reason"] == reason
    assert parent.data.tags["vae_tune.target"] == "0.5"
    note = optuna_dashboard.get_note(study)
    assert "- target: `0.5`" in note and f"**Stopped early**: {reason}" in note
    status = invoke(tmp_path, "status", env={"COLUMNS": "400"})
    assert "target: trial 0 reached" in status.output and "target 0.5" in status.output


@pytest.mark.slow
def test_a_target_just_out_of_reach_runs_the_whole_budget(tmp_path: Path) -> None:
    (tmp_path / "cold").mkdir()
    (tmp_path / "aimed").mkdir()
    cold = invoke(tmp_path / "cold", "study", "ae", *TINY, "--n-trials", "2")
    assert cold.exit_code == 0, cold.output
    values = [t.value for t in load_study(tmp_path / "cold").get_trials()]
    target = min(v for v in values if v is not None) * (1 - 1e-4)
    aimed = invoke(
        tmp_path / "aimed", "study", "ae", *TINY, "--n-trials", "2", "--target", str(target)
    )
    assert aimed.exit_code == 0, aimed.output
    study = load_study(tmp_path / "aimed")
    # The same seed runs the same trials: the target lies just beyond the best of them.
    assert [t.value for t in study.get_trials()] == pytest.approx(values, rel=1e-5)
    assert [t.state in FINISHED for t in study.get_trials()] == [True, True]
    assert StudyRecord(study).stop_reason is None
    _, [parent], _ = runs_of(tmp_path / "aimed")
    assert "stop_reason" not in parent.data.tags
