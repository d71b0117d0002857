"""Run options: command line > space file > default, in one place; seeds that reach the sampler;
patience that stops a study."""

from __future__ import annotations

from pathlib import Path

import optuna
import optuna_dashboard
import pytest

from tests.helpers import REPO, invoke
from vae_tune.errors import SpaceError
from vae_tune.project.storage import open_storage
from vae_tune.record import StudyRecord
from vae_tune.space.options import CommandLine, resolve
from vae_tune.space.spaces import load_space, parse_space
from vae_tune.studies.stopping import patience_spent

SMALL = ["--epochs", "1", "--train-size", "300", "--val-size", "200"]
SPACE = """
stage: ae
study:
  sampler: {name: tpe, seed: 7}
  n_trials: 5
  patience: 3
fixed: {train.epochs: 2}
search:
  train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
"""


def test_command_line_beats_space_file_beats_default() -> None:
    space = parse_space(SPACE)
    _, from_file = resolve(CommandLine(), space)
    assert (from_file.seed, from_file.n_trials, from_file.patience) == (7, 5, 3)
    typed, from_cli = resolve(CommandLine(seed=1, n_trials=9, patience=2, epochs=4), space)
    assert (from_cli.seed, from_cli.n_trials, from_cli.patience) == (1, 9, 2)
    assert typed.fixed["train.epochs"] == 4
    assert "seed" not in typed.settings.sampler  # derived from the resolved seed, not read twice
    bare = parse_space(
        SPACE.replace("seed: 7", "").replace("n_trials: 5", "").replace("patience: 3", "")
    )
    _, defaults = resolve(CommandLine(), bare)
    assert (defaults.seed, defaults.n_trials, defaults.patience) == (0, 12, None)


def test_shipped_spaces_do_not_pin_the_seed() -> None:
    for path in (REPO / "search_spaces").glob("*.yaml"):
        assert "seed" not in load_space(path).settings.sampler, path.name


@pytest.mark.parametrize("key", ["n_trials", "patience"])
def test_counts_in_the_space_file_are_checked(key: str) -> None:
    with pytest.raises(SpaceError, match=f"study.{key}: must be an integer >= 1"):
        parse_space(SPACE.replace(f"{key}: ", f"{key}: -"))


def test_patience_counts_finished_trials_since_the_best() -> None:
    study = optuna.create_study(direction="minimize")
    for value in (1.0, 0.5):
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=value))
    assert patience_spent(study, 2) is None
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.7))
    pruned = optuna.trial.create_trial(
        params={},
        distributions={},
        state=optuna.trial.TrialState.PRUNED,
        intermediate_values={1: 0.9},
    )
    study.add_trial(pruned)  # a pruned trial is finished and did not improve
    assert "no new best in the last 2 finished trials (best: trial 1)" in patience_spent(study, 2)


def first_params(root: Path) -> list[dict]:
    study = optuna.load_study(
        study_name="ae-fashion-mnist", storage=open_storage(str(root / "studies/optuna.journal"))
    )
    return [t.params for t in study.get_trials()]


@pytest.mark.slow
def test_seed_reaches_the_sampler(tmp_path: Path) -> None:
    params = {}
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        root = tmp_path / name
        root.mkdir()
        result = invoke(root, "study", "ae", "--n-trials", "2", "--seed", seed, *SMALL)
        assert result.exit_code == 0, result.output
        params[name] = first_params(root)
    assert params["a"] == params["b"]  # the same seed draws the same configurations
    assert params["a"] != params["c"]  # another seed draws others
    assert params["a"][0] != params["c"][0]


@pytest.mark.slow
def test_patience_stops_the_study_and_says_why(tmp_path: Path) -> None:
    result = invoke(
        tmp_path, "study", "ae", "--n-trials", "8", "--patience", "1", "--pruner", "none", *SMALL
    )
    assert result.exit_code == 0, result.output
    study = optuna.load_study(
        study_name="ae-fashion-mnist",
        storage=open_storage(str(tmp_path / "studies/optuna.journal")),
    )
    values = [t.value for t in study.get_trials()]
    improved = all(b < min(values[:i]) for i, b in enumerate(values) if i)
    if improved:  # every trial beat the ones before: patience never ran out
        assert len(values) == 8
        return
    # It stopped right after the first trial that did not improve, and says so.
    first_miss = next(i for i, v in enumerate(values) if i and v >= min(values[:i]))
    assert len(values) == first_miss + 1
    reason = StudyRecord(study).stop_reason
    assert reason is not None and reason.startswith(
        "patience: no new best in the last 1 finished trials"
    )
    assert "stopped early" in result.output
    note = optuna_dashboard.get_note(study)
    assert "Stopped early" in note and "patience" in note


def test_study_help_lists_patience() -> None:
    result = invoke(Path.cwd(), "study", "--help")
    assert "--patience" in result.output
