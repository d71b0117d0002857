"""Search-space files: the shipped one loads and samples; every mistake names file and key."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from vae_tune.errors import SpaceError
from vae_tune.models.config import build_config
from vae_tune.space.spaces import load_space, parse_space

REPO = Path(__file__).resolve().parent.parent
AE_SPACE = REPO / "search_spaces" / "ae.yaml"


def test_shipped_ae_space_samples_a_full_config() -> None:
    space = load_space(AE_SPACE)
    assert space.stage == "ae"
    assert space.text == AE_SPACE.read_text()
    assert {p.name for p in space.params} == {
        "model.latent_dim",
        "model.dropout",
        "train.weight_decay",
        "train.optimizer",
        "train.lr",
    }
    trial = optuna.trial.FixedTrial(
        {
            "model.latent_dim": 185,
            "model.dropout": 0.005,
            "train.weight_decay": 1.04e-5,
            "train.optimizer": "adam",
            "train.lr": 0.0058,
        }
    )
    flat = space.sample(trial)
    config = space.config(flat)
    assert config.model.latent_dim == 185
    assert config.train.lr == 0.0058
    assert config.train.epochs == space.fixed["train.epochs"]
    assert config.model.channels == (32, 64, 128)  # a list in YAML, a tuple in the config
    assert config.model.batchnorm is True
    assert config.train.schedule == "cosine"


def test_sampling_stays_inside_the_ranges() -> None:
    space = load_space(AE_SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        flat = space.sample(study.ask())
        assert 8 <= flat["model.latent_dim"] <= 256
        assert 1e-4 <= flat["train.lr"] <= 3e-2
        assert flat["train.optimizer"] in ("adam", "adamw", "sgd")
        build_config(flat)  # every sampled point is a valid config


def test_exponent_floats_without_a_dot_are_floats() -> None:
    space = parse_space(
        "stage: ae\nsearch:\n  train.lr: {type: float, low: 1e-4, high: 1e-2, log: true}\n"
    )
    assert space.params[0].low == 1e-4


def _mutated(tmp_path: Path, change) -> Path:
    doc = yaml.safe_load(AE_SPACE.read_text())
    change(doc)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


BAD_SPACES = {
    "unknown top-level key": (lambda d: d.update(serach={}), "serach"),
    "unknown config key": (
        lambda d: d["search"].update({"model.latnt_dim": {"type": "int", "low": 1, "high": 2}}),
        "model.latnt_dim",
    ),
    "wrong param type": (lambda d: d["search"]["model.dropout"].update(type="double"), "type"),
    "low above high": (
        lambda d: d["search"]["model.latent_dim"].update(low=300),
        "model.latent_dim",
    ),
    "log with zero low": (lambda d: d["search"]["model.dropout"].update(log=True), "low"),
    "string bound": (lambda d: d["search"]["train.lr"].update(high="big"), "train.lr.high"),
    "float bound on int": (
        lambda d: d["search"]["model.latent_dim"].update(high=12.5),
        "model.latent_dim.high",
    ),
    "value a config rejects": (
        lambda d: d["search"]["model.dropout"].update(high=1.5),
        "model.dropout",
    ),
    "unknown optimizer choice": (
        lambda d: d["search"]["train.optimizer"].update(choices=["adam", "lbfgs"]),
        "train.optimizer",
    ),
    "fixed value of the wrong type": (
        lambda d: d["fixed"].update({"train.epochs": "ten"}),
        "train.epochs",
    ),
    "fixed and searched": (lambda d: d["fixed"].update({"train.lr": 0.1}), "train.lr"),
    "unknown pruner": (lambda d: d["study"].update(pruner={"name": "hyperbandd"}), "pruner"),
    "bad pruner option": (
        lambda d: d["study"].update(pruner={"name": "median", "n_warmup": 2}),
        "study.pruner",
    ),
    "unknown metric": (lambda d: d["study"].update(metric="val_acc"), "study.metric"),
    "unknown stage": (lambda d: d.update(stage="gan"), "stage"),
    "stage as a list": (lambda d: d.update(stage=["ae"]), "stage"),
    "metric as a list": (lambda d: d["study"].update(metric=["val_loss"]), "study.metric"),
    "sampler name as a list": (
        lambda d: d["study"].update(sampler={"name": ["tpe"]}),
        "study.sampler",
    ),
    "threshold pruner without a bound": (
        lambda d: d["study"].update(pruner={"name": "threshold"}),
        "study.pruner",
    ),
    "empty choices": (lambda d: d["search"]["train.optimizer"].update(choices=[]), "choices"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_bad_space_names_file_and_key(tmp_path: Path, case: str) -> None:
    change, key = BAD_SPACES[case]
    path = _mutated(tmp_path, change)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert key in message, message


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("stage: ae\nsearch: [unclosed\n")
    with pytest.raises(SpaceError, match=r"broken\.yaml.*not valid YAML"):
        load_space(bad)
    with pytest.raises(SpaceError, match="cannot read"):
        load_space(tmp_path / "nope.yaml")


def test_fixed_overrides() -> None:
    space = load_space(AE_SPACE).with_fixed({"train.epochs": 3})
    assert space.config(space.fixed).train.epochs == 3
    with pytest.raises(SpaceError, match=r"train\.lr"):
        load_space(AE_SPACE).with_fixed({"train.lr": 0.1})


@pytest.mark.parametrize("path", sorted((REPO / "search_spaces").glob("*.yaml")), ids=str)
def test_every_shipped_space_loads_and_samples(path: Path) -> None:
    space = load_space(path)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    config = space.config(space.sample(trial))
    assert config.train.epochs == space.fixed["train.epochs"]
