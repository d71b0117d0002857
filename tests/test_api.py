"""The public Python API: what `import vae_tune` offers a script or a notebook, and that the CLI
is a shell over it (same option names and defaults). The slow tests run a small study,
promote it and load its champion in-process, silently, on real Fashion-MNIST."""

from __future__ import annotations

import inspect
import subprocess
import sys
from enum import Enum
from pathlib import Path

import pandas as pd
import pytest
import torch
import typer

import vae_tune as vt
from tests.helpers import data_dir, mlflow_client
from vae_tune import api
from vae_tune.cli import app
from vae_tune.data.splits import load_splits
from vae_tune.errors import SpaceError, VaeTuneError
from vae_tune.progress import EpochUpdate
from vae_tune.tracking.registry import UntrustedModelError

TINY = {"epochs": 1, "train_size": 500, "val_size": 200}
# CLI defaults that are text a command line parses, where the API takes the parsed value.
PARSED = {("curve", "sizes"), ("compare", "trials"), ("submit", "sbatch")}
# submit's stores have no default in the API: a cluster cannot guess them.
REQUIRED = {("submit", "storage"), ("submit", "tracking_uri")}


def python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout


def commands() -> dict[str, typer.core.TyperCommand]:
    return dict(typer.main.get_group(app).commands)  # type: ignore[arg-type]


def test_help_shows_every_option_as_a_typed_keyword() -> None:
    text = python("import vae_tune as vt; help(vt.study)")
    assert "study(stage: str, *, " in text  # everything after the stage is keyword-only
    names = [p.name for p in commands()["study"].params if p.name != "stage"]
    assert len(names) >= 23
    for name in [*names, "project", "log", "progress"]:
        assert f" {name}: " in text, f"{name} is not a typed parameter of vt.study"
    assert "n_trials: int | None = None" in text
    assert "dataset: str = 'fashion-mnist'" in text
    assert "val_size: int = 12000" in text
    assert "-> vae_tune.usecases.runner.StudyResult" in text
    assert "Args:" in text and "VaeTuneError" in text  # documented, errors included


def test_import_loads_no_torch_optuna_or_mlflow() -> None:
    heavy = python(
        "import sys, vae_tune; print(sorted(m for m in ('torch', 'optuna', 'mlflow', "
        "'pandas', 'typer') if m in sys.modules))"
    )
    assert heavy.strip() == "[]"
    # `vae-tune ui` serves for hours: its process holds no torch, Optuna or MLflow either.
    serving = python(
        "import sys; from vae_tune import api; api.ui; print(sorted(m for m in ('torch', "
        "'optuna', 'mlflow', 'pandas') if m in sys.modules))"
    )
    assert serving.strip() == "[]"
    assert python("import vae_tune; print(vae_tune.__version__)").strip() == "0.5.0"


def test_public_functions_win_over_modules_of_the_same_name() -> None:
    """No module or package at the root shares a public name (0.4's study.py, promote.py,
    pipeline.py and export.py did): importing one would turn `vae_tune.study` from the
    function into the module. Importing the modules that now hold that code changes nothing."""
    root = Path(vt.__file__).parent
    housed = {p.stem for p in root.glob("*.py")} | {p.name for p in root.glob("*/__init__.py")}
    housed |= {p.parent.name for p in root.glob("*/__init__.py")}
    assert not housed & set(vt.__all__)
    shown = python(
        "import vae_tune.studies.lifecycle, vae_tune.promotion.promote\n"
        "import vae_tune.usecases.pipeline, vae_tune.tracking.export\n"
        "import vae_tune as vt\n"
        "from vae_tune import study\n"
        "print(type(vt.study).__name__, type(vt.promote).__name__, "
        "type(vt.pipeline).__name__, type(vt.export).__name__, study is vt.study)"
    )
    assert shown.split() == ["function"] * 4 + ["True"]
    assert set(vt.__all__) <= set(dir(vt))
    for name in vt.__all__:
        assert getattr(vt, name) is not None


@pytest.mark.parametrize("name", sorted(commands()))
def test_each_command_mirrors_its_api_function(name: str) -> None:
    """Every CLI option is a parameter of the API function of the command's name, with the
    same default; every parameter after the positional ones is keyword-only."""
    function = getattr(api, name)
    parameters = inspect.signature(function).parameters
    for param in commands()[name].params:
        if param.name in ("ctx", None):
            continue
        assert param.name in parameters, f"vae-tune {name} --{param.name}: not in api.{name}"
        wanted = parameters[param.name]
        if param.required or (name, param.name) in REQUIRED:
            assert wanted.default is inspect.Parameter.empty
        elif (name, param.name) not in PARSED:
            default = param.default.value if isinstance(param.default, Enum) else param.default
            assert wanted.default == default, f"api.{name}({param.name}=...)"
    positional = [p for p in parameters.values() if p.kind != inspect.Parameter.KEYWORD_ONLY]
    assert [p.name for p in positional] in ([], ["stage"], ["what", "stage"])


def test_a_bad_option_raises_a_vae_tune_error(tmp_path: Path) -> None:
    with pytest.raises(VaeTuneError, match="n_trials=0"):
        vt.study("ae", n_trials=0, project=tmp_path)
    with pytest.raises(VaeTuneError, match="unknown stage 'bogus'"):
        vt.study("bogus", project=tmp_path)
    with pytest.raises(VaeTuneError, match="encoder='cnn'"):
        vt.promote("mlp", encoder="cnn", project=tmp_path)
    with pytest.raises(VaeTuneError, match="--budget 'soon'"):
        vt.pipeline(budget="soon", project=tmp_path)
    with pytest.raises(SpaceError, match=r"missing\.yaml"):
        vt.study("ae", space=tmp_path / "missing.yaml", project=tmp_path)
    with pytest.raises(VaeTuneError, match="no study storage"):
        vt.load_champion("ae", project=tmp_path)
    with pytest.raises(VaeTuneError, match="format='xlsx'"):
        api.export("ae", format="xlsx", project=tmp_path)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_search_space_from_yaml_is_load_space() -> None:
    space = vt.SearchSpace.from_yaml(Path(vt.Project(Path.cwd()).space_path("vae")))
    assert space.stage == "vae" and space.params
    with pytest.raises(SpaceError):
        vt.SearchSpace.from_yaml("/nonexistent/space.yaml")


def test_project_takes_a_path_and_the_call_s_stores(tmp_path: Path) -> None:
    from vae_tune.api._common import open_project

    project = open_project(tmp_path, storage="s.journal", device="auto")
    assert project.root == tmp_path and project.storage == "s.journal"
    assert project.device == "auto"
    given = vt.Project(tmp_path, device="cpu")
    assert open_project(given, device="auto") is given  # the default keeps the Project's own
    assert open_project(given, device="cuda").device == "cuda"


@pytest.fixture(scope="module")
def studied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, vt.StudyResult, list]:
    root = tmp_path_factory.mktemp("api")
    updates: list[EpochUpdate] = []
    result = vt.study(
        "ae",
        n_trials=2,
        **TINY,
        data_dir=data_dir(),
        device="cpu",
        project=root,
        progress=updates.append,
    )
    return root, result, updates


@pytest.mark.slow
def test_a_study_in_process_prints_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A space loaded (and changed) in Python, not a file: what the study stores and runs.
    space = vt.SearchSpace.from_yaml(vt.Project(tmp_path).space_path("ae"))
    space = space.with_fixed({"train.batch_size": 64})
    result = vt.study("ae", n_trials=2, **TINY, space=space, data_dir=data_dir(), project=tmp_path)
    out, err = capsys.readouterr()
    assert out == "" and err == ""
    assert result.summary.counts["COMPLETE"] >= 1
    assert result.study.user_attrs["settings"]["fixed"]["train.batch_size"] == 64


@pytest.mark.slow
def test_study_returns_its_study_trials_and_parent_run(studied) -> None:
    root, result, updates = studied
    assert result.study.study_name == "ae-fashion-mnist"
    trials = result.trials
    assert isinstance(trials, pd.DataFrame) and len(trials) == 2
    assert list(trials["number"]) == [0, 1]
    assert set(trials["state"]) <= {"COMPLETE", "PRUNED"}
    assert {"value", "mlflow_run_id", "mlflow_status"} <= set(trials.columns)
    assert any(c.startswith("params_") for c in trials.columns)
    client = mlflow_client(root)
    parent = client.get_run(result.parent_run_id)
    assert parent.data.tags["vae_tune.role"] == "study"
    for run_id in trials["mlflow_run_id"]:
        assert client.get_run(run_id).data.tags["mlflow.parentRunId"] == result.parent_run_id
    # The progress callback saw every epoch of both trials.
    assert [(u.trial, u.epoch) for u in updates] == [(0, 1), (1, 1)]
    # The same table through the view function, filtered and sorted as `vae-tune trials`.
    chosen = api.trials("ae", state="complete", project=root)
    assert chosen.attrs == {"study": "ae-fashion-mnist", "total": 2}
    assert set(chosen["state"]) == {"COMPLETE"}


@pytest.mark.slow
def test_promote_then_load_champion_reconstructs_images(
    studied, capsys: pytest.CaptureFixture[str]
) -> None:
    root, _, _ = studied
    capsys.readouterr()
    promotion = vt.promote("ae", top_k=1, data_dir=data_dir(), device="cpu", project=root)
    assert capsys.readouterr() == ("", "")
    assert promotion.record.model_name == "vae-tune-fashion-mnist-ae"
    model = vt.load_champion("ae", project=root)
    assert isinstance(model, torch.nn.Module) and not model.training
    again = vt.load_champion("ae", project=root, version=promotion.record.model_version)
    assert again.state_dict().keys() == model.state_dict().keys()
    images = load_splits("fashion-mnist", data_dir(), val_size=200, train_size=500).val_x[:10]
    with torch.no_grad():
        restored = model(images)
    assert restored.shape == images.shape
    assert float(restored.min()) >= 0.0 and float(restored.max()) <= 1.0
    # Each image is closer to its own reconstruction than to the others' reconstructions.
    errors = ((images[:, None] - restored[None]) ** 2).flatten(2).mean(-1)
    assert all(errors[i, i] < errors[i].mean() for i in range(10))
    with pytest.raises(UntrustedModelError, match="none of the versions"):
        vt.load_champion("ae", project=root, version="99")
