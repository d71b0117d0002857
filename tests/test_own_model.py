"""Your own model: a class in a module that is not vae-tune's, named in a space by import path
or through an installed entry point; its keys checked before any training; its failures failing
only its own trial; and the example package (examples/own_model) studied, promoted, registered
and loaded by MLflow alone."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from tests.helpers import REPO, TINY, invoke, load_study, mlflow_client, runs_of
from tests.test_promote import mlflow_alone
from tests.test_trial_states import CLASSES
from vae_tune.data.splits import Splits
from vae_tune.errors import SpaceError
from vae_tune.evaluation.tasks import AutoencoderTask
from vae_tune.models.factory import OwnAutoencoder
from vae_tune.project.storage import open_storage
from vae_tune.record import StudyRecord, TrialRecord
from vae_tune.space.spaces import parse_space
from vae_tune.studies.lifecycle import StudyOptions, run_study
from vae_tune.tracking.tracker import Tracker

EXAMPLE = REPO / "examples" / "own_model"
MODULE = "own_nets_for_tests"  # a module of the user's, on sys.path only while these tests run
NETS = '''
import torch
from torch import nn


class TinyAE(nn.Module):
    """`mode` breaks it on purpose: broken (does not build), shape (latents one too wide),
    nan (NaN reconstructions while training)."""

    def __init__(
        self, image: tuple, latent_dim: int, dropout: float = 0.0, width: int = 8,
        mode: str = "ok",
    ) -> None:
        super().__init__()
        if mode == "broken":
            raise ValueError("this one cannot be built")
        self.image, self.mode = tuple(image), mode
        pixels = image[0] * image[1] * image[2]
        out = latent_dim + 1 if mode == "shape" else latent_dim
        self.encoder = nn.Sequential(
            nn.Flatten(), nn.Linear(pixels, width), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(width, out),
        )
        self.decoder = nn.Sequential(nn.Linear(latent_dim, pixels), nn.Sigmoid())

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        x = self.decoder(z).reshape(len(z), *self.image)
        return x * float("nan") if self.mode == "nan" and self.training else x


class Untraceable(TinyAE):
    """Python control flow on the data: torch.export cannot trace it."""

    def encode(self, x):
        z = self.encoder(x)
        return z if float(z.detach().sum()) > -1e9 else -z


class NeedsWidth(TinyAE):
    def __init__(self, image: tuple, latent_dim: int, width: int) -> None:
        super().__init__(image, latent_dim, width=width)
'''
SPACE = f"""
stage: ae
fixed:
  model.family: {MODULE}:TinyAE
  train.epochs: 2
  train.batch_size: 32
search:
  model.width: {{type: int, low: 4, high: 8}}
"""


@pytest.fixture(scope="module")
def user_module(tmp_path_factory: pytest.TempPathFactory):
    """The user's module, in a folder of its own on sys.path; and an installed package's
    entry point (a dist-info folder, as pip writes it) naming the same class `tiny`."""
    folder = tmp_path_factory.mktemp("user")
    (folder / f"{MODULE}.py").write_text(NETS)
    info = folder / "own_nets_for_tests-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: own-nets-for-tests\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(f"[vae_tune.models]\ntiny = {MODULE}:TinyAE\n")
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))
    sys.modules.pop(MODULE, None)


def splits() -> Splits:
    torch.manual_seed(0)
    images, labels = torch.rand(64, 1, 16, 16), torch.arange(64) % 10
    return Splits("fashion-mnist", images, labels, images[:32], labels[:32], CLASSES)


def test_a_space_names_its_own_model_and_searches_its_keys(user_module) -> None:
    space = parse_space(SPACE, "own.yaml")
    assert [p.name for p in space.params] == ["model.width"]
    config = space.config({**space.fixed, "model.width": 6})
    assert config.model.family == f"{MODULE}:TinyAE" and dict(config.model.options) == {"width": 6}
    task = AutoencoderTask("ae", splits())
    model = task.build(config)
    assert isinstance(model, OwnAutoencoder)
    assert model(splits().train_x[:3]).shape == (3, 1, 16, 16)


REFUSALS = {
    "unknown key": (
        "  model.depth: 2\n",
        "fixed.model.depth: is not a key of own_nets_for_tests:TinyAE (its keys: mode, width)",
    ),
    "wrong type": (
        "  model.mode: 3\n",
        "fixed.model.mode: own_nets_for_tests:TinyAE takes str, got 3 (int)",
    ),
    "built-in layers' key": (
        "  model.channels: [4, 8, 8]\n",
        "fixed.model.channels: is for the built-in conv and mlp layers, not own_nets_for_tests:",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_bad_key_of_ones_own_model_is_refused_before_anything_is_written(
    user_module, tmp_path: Path, case: str
) -> None:
    line, message = REFUSALS[case]
    space = tmp_path / "own.yaml"
    space.write_text(SPACE.replace("  train.epochs: 2\n", f"  train.epochs: 2\n{line}"))
    project = tmp_path / "project"
    project.mkdir()
    result = invoke(project, "study", "ae", "--space", str(space))
    output = " ".join(result.output.split())
    assert result.exit_code == 2, output
    assert f"{space}: {message}" in output and "Traceback" not in output
    assert list(project.iterdir()) == []


def test_a_required_key_left_out_or_a_class_that_is_not_there_is_refused(
    user_module, tmp_path: Path
) -> None:
    cases = {
        "NeedsWidth": "fixed.model.width: own_nets_for_tests:NeedsWidth requires it (it has no "
        "default): fix or search it",
        "Nope": "fixed.model.family: cannot import own_nets_for_tests:Nope: AttributeError",
    }
    for name, message in cases.items():
        space = tmp_path / f"{name}.yaml"
        text = SPACE.replace(":TinyAE", f":{name}")
        space.write_text(text.replace("  model.width: {type: int, low: 4, high: 8}\n", ""))
        project = tmp_path / name
        project.mkdir()
        result = invoke(project, "study", "ae", "--space", str(space))
        output = " ".join(result.output.split())
        assert result.exit_code == 2 and f"{space}: {message}" in output, output
        assert "Traceback" not in output and list(project.iterdir()) == []


def test_an_import_path_from_a_spec_alone_is_not_imported(tmp_path: Path) -> None:
    """What a registry's spec names is imported only once the user's own space (or study)
    named it: here nothing did, so a spec naming a module is refused, and the module never
    runs (it would write a marker)."""
    from vae_tune.models.contract import UntrustedCodeError
    from vae_tune.models.saving import model_from_spec

    (tmp_path / "planted.py").write_text(
        f"open({str(tmp_path / 'ran')!r}, 'w').write('x')\nclass Net: pass\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(UntrustedCodeError, match="imported only when your own search space"):
            model_from_spec({"kind": "ae", "config": {"family": "planted:Net", "latent_dim": 4}})
    finally:
        sys.path.remove(str(tmp_path))
    assert not (tmp_path / "ran").exists()


def test_a_class_that_can_no_longer_be_imported_says_how_to_get_it_back() -> None:
    """A study of the user's recorded its model (so it is trusted), but the package is gone:
    rebuilding it (a fine-tuned head, a promotion) says what to do."""
    from vae_tune.errors import ConfigError
    from vae_tune.models import contract
    from vae_tune.models.saving import model_from_spec

    contract.trust("uninstalled_nets:ResNetAE")
    with pytest.raises(ConfigError) as refused:
        model_from_spec({"kind": "ae", "config": {"family": "uninstalled_nets:ResNetAE"}})
    assert refused.value.key == "model.family"
    assert "cannot import uninstalled_nets:ResNetAE: ModuleNotFoundError" in refused.value.message
    assert "Install the package that holds it, or put its folder on PYTHONPATH" in str(
        refused.value
    )


def test_ones_own_model_failing_fails_its_trial_and_the_study_goes_on(
    user_module, tmp_path: Path
) -> None:
    """A model that does not build, gives the wrong shapes or NaN fails its own trial, with a
    message naming the class, the trial's values and what was expected, in Optuna and in
    MLflow; the study runs its other trials."""
    text = SPACE.replace(
        "  model.width: {type: int, low: 4, high: 8}",
        "  model.mode: {type: categorical, choices: [ok, broken, shape, nan]}",
    ).replace("fixed:", "study:\n  sampler: {name: random}\nfixed:")
    space = parse_space(text, "own.yaml")
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlartifacts")
    storage = open_storage(str(tmp_path / "optuna.journal"), write=True)
    task = AutoencoderTask("ae", splits())
    run_study(space, task, storage, tracker, StudyOptions("own", n_trials=10, seed=1), str)
    trials = optuna.load_study(study_name="own", storage=storage).trials
    modes = {t.params["model.mode"] for t in trials}
    assert modes == {"ok", "broken", "shape", "nan"}, f"seed 1 drew only {modes}"
    family = f"{MODULE}:TinyAE"
    expected = {
        "broken": f"{family}(image=(1, 16, 16), latent_dim=32, mode='broken', dropout=0.0) "
        "failed to build: ValueError: this one cannot be built",
        "shape": f"{family}(image=(1, 16, 16), latent_dim=32, mode='shape', dropout=0.0): encode "
        "returned (2, 33); expected (2, 32): (N, model.latent_dim)",
        "nan": f"{family} {{'mode': 'nan'}}: NonFiniteLossError: non-finite train loss",
    }
    for trial in trials:
        mode = trial.params["model.mode"]
        run = tracker.client.get_run(TrialRecord(trial).run_id)
        if mode == "ok":
            assert trial.state == TrialState.COMPLETE and run.info.status == "FINISHED"
            continue
        reason = trial.user_attrs["fail_reason"]
        assert trial.state == TrialState.FAIL and expected[mode] in reason, reason
        assert run.info.status == "FAILED" and run.data.tags["fail_reason"] == reason
    first_failed = min(t.number for t in trials if t.state == TrialState.FAIL)
    assert any(t.state == TrialState.COMPLETE and t.number > first_failed for t in trials)


def test_an_installed_entry_point_names_the_same_model(user_module, tmp_path: Path) -> None:
    space = parse_space(SPACE.replace(f"{MODULE}:TinyAE", "tiny"), "own.yaml")
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlartifacts")
    storage = open_storage(str(tmp_path / "optuna.journal"), write=True)
    task = AutoencoderTask("ae", splits())
    summary = run_study(space, task, storage, tracker, StudyOptions("ep", n_trials=1), str)
    [trial] = optuna.load_study(study_name="ep", storage=storage).trials
    assert trial.state == TrialState.COMPLETE
    assert summary.best_run_id == TrialRecord(trial).run_id


@pytest.mark.slow
def test_a_model_that_cannot_be_exported_is_refused_before_the_test_split_is_read(
    user_module, tmp_path: Path
) -> None:
    space = tmp_path / "untraceable.yaml"
    space.write_text(SPACE.replace(":TinyAE", ":Untraceable"))
    study = invoke(tmp_path, "study", "ae", "--space", str(space), "--n-trials", "1", *TINY)
    assert study.exit_code == 0, study.output
    result = invoke(tmp_path, "promote", "ae")
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in output, output
    assert f"model {MODULE}:Untraceable cannot be exported as a pt2 MLflow Model" in output
    assert "Refused before the test split was read" in output
    assert StudyRecord(load_study(tmp_path)).test_reads == []
    assert mlflow_client(tmp_path).search_registered_models() == []


# Neither vae-tune nor the user's package may be imported: MLflow alone reads the champions.
BLOCKER = """
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("vae_tune", "own_model"):
            raise ImportError(f"{name} is blocked: MLflow alone must read the champion")

sys.meta_path.insert(0, Blocked())
"""


@pytest.mark.slow
def test_the_example_model_is_studied_promoted_and_served_by_mlflow_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/own_model through study, promote, study mlp (fine-tuning its encoder) and
    promote mlp; then, in a process that cannot import vae-tune or the example, the head's
    champion predicts the test split with the accuracy its promotion logged.

    Then the example's package is gone (uninstalled, or another machine): a frozen head is
    studied and promoted on the encoder's exported graph, and MLflow alone serves that head's
    champion too; a fine-tuned head, which needs the class, is refused before any trial."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    space = EXAMPLE / "own_model" / "ae.yaml"
    steps = [
        ["study", "ae", "--space", str(space), "--n-trials", "2", *TINY],
        ["promote", "ae"],
        ["study", "mlp", "--n-trials", "2", *TINY],
        ["promote", "mlp"],
    ]
    for step in steps:
        result = invoke(tmp_path, *step)
        assert result.exit_code == 0, f"{step}: {result.output}"
    client = mlflow_client(tmp_path)
    encoder = client.get_model_version_by_alias("vae-tune-fashion-mnist-ae", "champion")
    assert client.get_run(encoder.run_id).data.params["model.family"] == ("own_model.nets:ResNetAE")
    assert_served_by_mlflow_alone(tmp_path)

    sys.path.remove(str(EXAMPLE))
    for name in [m for m in sys.modules if m.split(".")[0] == "own_model"]:
        monkeypatch.delitem(sys.modules, name)
    frozen = ["--space", str(REPO / "search_spaces" / "mlp_frozen.yaml")]
    result = invoke(
        tmp_path, "study", "mlp", "--study-name", "frozen", "--n-trials", "2", *frozen, *TINY
    )
    output = " ".join(result.output.split())
    assert result.exit_code == 0, result.output
    assert "vae-tune-fashion-mnist-ae version 1 as its exported graph, frozen" in output
    assert "cannot import own_model.nets:ResNetAE: ModuleNotFoundError" in output
    result = invoke(tmp_path, "promote", "mlp", "--study-name", "frozen")
    assert result.exit_code == 0, result.output
    assert_served_by_mlflow_alone(tmp_path)

    refused = invoke(tmp_path, "study", "mlp", "--study-name", "fine-tuned", *TINY)
    output = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "Traceback" not in output, refused.output
    assert "mlp.yaml fine-tunes the encoder (head.mode: finetune), but the encoder " in output
    assert "Make own_model.nets:ResNetAE importable again" in output
    journal = open_storage(str(tmp_path / "studies" / "optuna.journal"))
    assert "fine-tuned" not in optuna.get_all_study_names(journal)


@pytest.mark.slow
def test_the_example_vae_is_trained_under_vae_tunes_elbo_and_promoted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example's VAE: its posterior and decoder under vae-tune's ELBO (the likelihood
    resolved for the data, the terms and collapse metrics logged), promoted, and loaded back
    as vae-tune's module whose posterior and decoder work."""
    import vae_tune as vt

    monkeypatch.syspath_prepend(str(EXAMPLE))
    space = EXAMPLE / "own_model" / "vae.yaml"
    for step in (
        ["study", "vae", "--space", str(space), "--n-trials", "1", *TINY],
        ["promote", "vae"],
    ):
        result = invoke(tmp_path, *step)
        assert result.exit_code == 0, f"{step}: {result.output}"
    _, _, children = runs_of(tmp_path, "vae-fashion-mnist")
    trial = children[0].data
    assert trial.params["model.family"] == "own_model.nets:ResNetVAE"
    assert trial.params["model.likelihood"] in ("gaussian", "bernoulli")  # resolved, not auto
    assert {"val_neg_elbo", "val_kl", "active_units"} <= set(trial.metrics), trial.metrics
    assert torch.isfinite(torch.tensor(trial.metrics["val_neg_elbo"]))

    champion = vt.load_champion("vae", project=tmp_path)
    assert type(champion).__name__ == "OwnVAE"
    images = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        mu, logvar = champion.posterior(images)
        decoded = champion.decode(mu)
    assert mu.shape == logvar.shape == (4, int(trial.params["model.latent_dim"]))
    assert decoded.shape == images.shape and decoded.min() >= 0 and decoded.max() <= 1


def assert_served_by_mlflow_alone(root: Path) -> None:
    """The head's champion, in a process that cannot import vae-tune or the example, predicts
    the test split with the accuracy its promotion logged; the encoder's decoder decodes."""
    client = mlflow_client(root)
    version = client.get_model_version_by_alias("vae-tune-fashion-mnist-mlp", "champion")
    logged = client.get_run(version.run_id).data.metrics["test_accuracy"]
    alone = mlflow_alone(root, root / "blocker", BLOCKER)
    assert abs(alone["accuracy"] - logged) < 0.001, (alone["accuracy"], logged)
    assert alone["decoded"] == [8, 1, 28, 28]


def test_a_malformed_family_search_is_refused_by_the_parameter_parser() -> None:
    """`search: {model.family: conv}` is no parameter spec: a SpaceError naming the key, not
    an AttributeError from the own-model check that reads its choices."""
    with pytest.raises(SpaceError, match=r"x\.yaml: model\.family: must be a mapping, got str"):
        parse_space("stage: ae\nsearch:\n  model.family: conv\n", "x.yaml")
