"""`--warm-start`: a study's first trials are the best configurations of earlier studies, in
this storage or another, fitted to its space and tagged with their source in both stores."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.helpers import TINY, invoke, load_study, runs_of
from vae_tune.errors import VaeTuneError
from vae_tune.space.extras import Source, located, parse_sources
from vae_tune.space.spaces import Param
from vae_tune.studies.warm_start import fit_to_space

REPO = Path(__file__).resolve().parent.parent
SOURCE = "ae-fashion-mnist"
# A narrower space than search_spaces/ae.yaml: the source's values fall outside it.
NARROW = {
    "model.latent_dim: {type: int, low: 8, high: 256, log: true}": (
        "model.latent_dim: {type: int, low: 8, high: 12}"
    ),
    "train.lr: {type: float, low: 3.0e-4, high: 1.0e-2, log: true}": (
        "train.lr: {type: float, low: 1.0e-4, high: 2.0e-4, log: true}"
    ),
    "  model.dropout: {type: float, low: 0.0, high: 0.3}\n": "",
}


def test_a_source_is_fitted_to_the_space() -> None:
    params = (
        Param("a", "int", low=8, high=12),
        Param("b", "float", low=0.0, high=1.0, step=0.25),
        Param("c", "categorical", choices=("x", "y")),
        Param("d", "float", low=0.0, high=1.0),
    )
    fitted, said = fit_to_space(params, {"a": 50, "b": 0.6, "c": "y", "e": 3})
    assert fitted == {"a": 12, "b": 0.5, "c": "y"}
    assert said == [
        "a 50 clipped to 12",
        "b 0.6 clipped to 0.5",
        "d left to the sampler (not searched there)",
        "dropped e (not searched here)",
    ]
    skipped, why = fit_to_space(params, {"a": 9, "c": "z"})
    assert skipped is None and why == ["c='z' is not one of ['x', 'y']"]


def test_sources_are_named_and_never_the_study_itself(tmp_path: Path) -> None:
    here = str(tmp_path / "studies" / "optuna.journal")
    sources = parse_sources("ae-mnist, postgresql://u:secret@db/x::ae-svhn", "--warm-start")
    assert sources == (Source("ae-mnist"), Source("ae-svhn", "postgresql://u:secret@db/x"))
    assert str(sources[1]) == "postgresql://u:***@db/x::ae-svhn"
    assert located(sources, "ae", here)[0] == Source("ae-mnist", here, here=True)
    with pytest.raises(VaeTuneError, match="never warm-starts from itself"):
        located((Source("ae", f"{tmp_path}/studies/../studies/optuna.journal"),), "ae", here)
    refused = invoke(tmp_path, "study", "ae", "--warm-start", "ae-fashion-mnist", *TINY)
    assert refused.exit_code == 2 and "never warm-starts from itself" in refused.output
    assert not (tmp_path / "studies").exists(), "refused before anything was written"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished study of three trials on the full ae space."""
    root = tmp_path_factory.mktemp("source")
    result = invoke(root, "study", "ae", *TINY, "--n-trials", "3")
    assert result.exit_code == 0, result.output
    return root


def best_first(root: Path) -> list:
    complete = load_study(root).get_trials(states=(TrialState.COMPLETE,))
    return sorted(complete, key=lambda t: t.value)


@pytest.mark.slow
def test_first_trials_are_the_sources_best_clipped_and_tagged(source: Path) -> None:
    text = (REPO / "search_spaces" / "ae.yaml").read_text()
    for wide, narrow in NARROW.items():
        assert wide in text
        text = text.replace(wide, narrow)
    (source / "narrow.yaml").write_text(text)
    best = best_first(source)[:2]
    args = ["--space", "narrow.yaml", "--study-name", "narrow", "--n-trials", str(len(best))]
    result = invoke(source, "study", "ae", *TINY, *args, "--warm-start", SOURCE)
    assert result.exit_code == 0, result.output
    assert "clipped to 12" in result.output and "dropped model.dropout" in result.output

    trials = load_study(source, "narrow").get_trials()
    assert len(trials) == len(best), "the source trials are not trials of this study"
    journal = str(source / "studies" / "optuna.journal")
    _, [parent], children = runs_of(source, "narrow")
    assert parent.data.tags["vae_tune.warm_start"] == SOURCE
    tags = {r.info.run_id: r.data.tags for r in children}
    for trial, origin in zip(trials, best, strict=True):
        assert trial.user_attrs["warm_start"] == {
            "study": SOURCE,
            "storage": journal,
            "trial": origin.number,
        }
        run = tags[trial.user_attrs["mlflow_run_id"]]
        assert run["vae_tune.warm_start.study"] == SOURCE
        assert run["vae_tune.warm_start.trial"] == str(origin.number)
        assert trial.params["model.latent_dim"] == min(
            max(origin.params["model.latent_dim"], 8), 12
        )
        assert trial.params["train.lr"] == min(max(origin.params["train.lr"], 1e-4), 2e-4)
        assert trial.params["train.optimizer"] == origin.params["train.optimizer"]
    assert len(load_study(source).get_trials()) == 3, "the source study is left as it was"


@pytest.mark.slow
def test_the_source_may_be_in_another_storage(source: Path, tmp_path: Path) -> None:
    journal = source / "studies" / "optuna.journal"
    result = invoke(
        tmp_path, "study", "ae", *TINY, "--n-trials", "1", "--warm-start", f"{journal}::{SOURCE}"
    )
    assert result.exit_code == 0, result.output
    [trial] = load_study(tmp_path).get_trials()
    origin = best_first(source)[0]
    assert trial.params == origin.params, "the same space: the configuration as it ran"
    assert trial.user_attrs["warm_start"] == {
        "study": SOURCE,
        "storage": str(journal),
        "trial": origin.number,
    }
    _, [parent], [run] = runs_of(tmp_path)
    assert parent.data.tags["vae_tune.warm_start"] == f"{journal}::{SOURCE}"
    assert run.data.tags["vae_tune.warm_start.storage"] == str(journal)


def test_the_pipeline_takes_the_latest_other_study_of_each_stage(tmp_path: Path) -> None:
    """Latest by the storage's order of creation; never the study itself, never another
    stage's, never one without trials."""
    import optuna

    from vae_tune.project.storage import open_storage
    from vae_tune.studies.warm_start import latest_other

    storage = open_storage(str(tmp_path / "optuna.journal"), write=True)
    for name, stage, trials in [
        ("ae-old", "ae", 1),
        ("ae-newer", "ae", 1),
        ("ae-empty", "ae", 0),
        ("vae-latest", "vae", 1),
        ("ae-fashion-mnist", "ae", 1),
    ]:
        study = optuna.create_study(study_name=name, storage=storage)
        study.set_user_attr("settings", {"stage": stage})
        for _ in range(trials):
            study.add_trial(optuna.trial.create_trial(value=1.0))
    assert latest_other(storage, "ae", "ae-fashion-mnist") == "ae-newer"
    assert latest_other(storage, "vae", "vae-fashion-mnist") == "vae-latest"
    assert latest_other(storage, "mlp", "mlp-ae-fashion-mnist") is None


@pytest.mark.slow
def test_pipeline_warm_start_begins_with_the_latest_other_study(tmp_path: Path) -> None:
    """`pipeline --warm-start`: the encoder study begins with the best configurations of the
    AE study run before it and says so; the head, with no other head study, starts cold."""
    earlier = invoke(tmp_path, "study", "ae", *TINY, "--n-trials", "2", "--study-name", "ae-old")
    assert earlier.exit_code == 0, earlier.output
    result = invoke(tmp_path, "pipeline", "--budget", "least", "--warm-start", *TINY[2:])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "warm start: ae-fashion-mnist begins with the best configurations of ae-old" in text
    assert "no other mlp study on this project; mlp-ae-fashion-mnist starts cold" in text
    first = load_study(tmp_path, "ae-fashion-mnist").trials[0]
    assert first.user_attrs["warm_start"]["study"] == "ae-old"
