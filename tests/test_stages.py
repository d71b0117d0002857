"""`vae-tune study vae` and `vae-tune study mlp --encoder ...` end to end on real Fashion-MNIST."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, invoke, load_study, mlflow_client, runs_of

pytestmark = pytest.mark.slow  # real studies on real data, subprocesses, servers

SMALL = ["--train-size", "1000", "--val-size", "500"]


@pytest.fixture(scope="module")
def vae_then_mlp(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    vae = invoke(root, "study", "vae", "--n-trials", "3", "--epochs", "2", *SMALL)
    assert vae.exit_code == 0, vae.output
    mlp = invoke(
        root, "study", "mlp", "--encoder", "vae", "--n-trials", "3", "--epochs", "10", *SMALL
    )
    assert mlp.exit_code == 0, mlp.output
    return root, mlp.output


def test_vae_trials_log_the_elbo_terms(vae_then_mlp) -> None:
    root, _ = vae_then_mlp
    study = load_study(root, "vae-fashion-mnist")
    assert len(study.get_trials()) == 3
    client, _, children = runs_of(root, "vae-fashion-mnist")
    assert len(children) == 3
    for run in children:
        history = {
            name: client.get_metric_history(run.info.run_id, name)
            for name in ("val_recon", "val_kl", "val_neg_elbo", "train_neg_elbo", "val_mse")
        }
        assert all(len(points) >= 1 for points in history.values())
        terms = (
            sorted(history[k], key=lambda m: m.step)
            for k in ("val_recon", "val_kl", "val_neg_elbo")
        )
        for recon, kl, total in zip(*terms, strict=True):
            assert kl.value >= 0
            assert total.value == pytest.approx(recon.value + kl.value, rel=1e-5)


def test_mlp_study_records_its_encoder_on_every_run(vae_then_mlp) -> None:
    root, output = vae_then_mlp
    encoder_study = load_study(root, "vae-fashion-mnist")
    best = encoder_study.best_trial
    assert f"encoder: retraining trial {best.number} of vae-fashion-mnist" in output

    study = load_study(root, "mlp-vae-fashion-mnist")
    assert study.direction.name == "MAXIMIZE"
    assert study.user_attrs["settings"]["encoder"]["encoder.trial"] == str(best.number)
    client, [parent], children = runs_of(root, "mlp-vae-fashion-mnist")
    assert len(children) == 3
    for run in [parent, *children]:
        assert run.data.tags["encoder.study"] == "vae-fashion-mnist"
        assert run.data.tags["encoder.trial"] == str(best.number)
        assert run.data.tags["encoder.run_id"] == best.user_attrs["mlflow_run_id"]
    for run in children:
        accuracy = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert all(0.0 <= m.value <= 1.0 for m in accuracy)
    assert study.best_value > 0.3  # far above chance (0.1), even on 1,000 images


def test_baselines_are_logged_once_beside_the_mlp_study(vae_then_mlp) -> None:
    root, _ = vae_then_mlp
    client = runs_of(root, "mlp-vae-fashion-mnist")[0]
    experiment = client.get_experiment_by_name("mlp-vae-fashion-mnist")
    baselines = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`vae_tune.role` = 'baseline'"
    )
    names = sorted(r.data.params["baseline"] for r in baselines)
    assert names == ["logreg_latents", "logreg_pca", "logreg_pixels"]
    for run in baselines:
        assert 0.5 < run.data.metrics["val_accuracy"] <= 1.0
    # Resuming the head study neither retrains the encoder nor logs the baselines again.
    again = invoke(
        root, "study", "mlp", "--encoder", "vae", "--n-trials", "4", "--epochs", "10", *SMALL
    )
    assert again.exit_code == 0, again.output
    assert "cached in" in again.output and "baselines:" not in again.output
    assert (
        len(client.search_runs([experiment.experiment_id], "tags.`vae_tune.role` = 'baseline'"))
        == 3
    )


def test_finetune_mode_trains_encoder_and_head(vae_then_mlp, tmp_path: Path) -> None:
    root, _ = vae_then_mlp
    result = invoke(
        root,
        "study",
        "mlp",
        "--encoder",
        "vae",
        "--space",
        str(REPO / "search_spaces/mlp.yaml"),
        "--study-name",
        "ft",
        "--n-trials",
        "2",
        "--epochs",
        "2",
        *SMALL,
    )
    assert result.exit_code == 0, result.output
    study = load_study(root, "ft")
    assert study.user_attrs["settings"]["fixed"]["head.mode"] == "finetune"
    assert all("train.encoder_lr" in t.params for t in study.get_trials())


def test_posterior_collapse_prunes_with_the_reason(tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "search_spaces/vae.yaml").read_text())
    doc["study"]["min_kl"] = 1.0e9  # no VAE reaches this: every trial counts as collapsed
    space = tmp_path / "collapse.yaml"
    space.write_text(yaml.safe_dump(doc))
    result = invoke(
        tmp_path, "study", "vae", "--space", str(space), "--n-trials", "2", "--epochs", "3", *SMALL
    )
    assert "posterior collapse at epoch 2" in result.output
    _, _, children = runs_of(tmp_path, "vae-fashion-mnist")
    assert [r.info.status for r in children] == ["KILLED", "KILLED"]
    assert all("posterior collapse" in r.data.tags["prune_reason"] for r in children)


def test_mlp_refuses_an_encoder_trained_on_another_split(vae_then_mlp) -> None:
    root, _ = vae_then_mlp
    result = invoke(root, "study", "mlp", "--encoder", "vae", "--seed", "1", *SMALL)
    assert result.exit_code == 2
    assert "another data split" in result.output


def test_mlp_without_an_encoder_study_says_what_to_run(tmp_path: Path) -> None:
    result = invoke(tmp_path, "study", "mlp", "--encoder", "ae", *SMALL)
    assert result.exit_code == 2
    assert "no study 'ae-fashion-mnist'" in result.output
    assert "run `vae-tune study ae` first" in result.output


def test_fully_connected_vae_study_on_mnist(tmp_path: Path) -> None:
    result = invoke(
        tmp_path,
        "study",
        "vae",
        "--dataset",
        "mnist",
        "--space",
        str(REPO / "search_spaces/vae_mlp.yaml"),
        "--study-name",
        "vae-mlp-mnist",
        "--n-trials",
        "2",
        "--epochs",
        "3",
        "--pruner",
        "none",
        "--train-size",
        "5000",
        "--val-size",
        "1000",
    )
    assert result.exit_code == 0, result.output
    study = load_study(tmp_path, "vae-mlp-mnist")
    assert study.user_attrs["settings"]["fixed"]["model.family"] == "mlp"
    complete = [t for t in study.get_trials() if t.value is not None]
    assert complete and all("model.hidden" in t.params for t in complete)
    assert all(50 < t.value < 600 for t in complete)  # nats per binarized MNIST image


def test_linear_head_study_is_tuned_logistic_regression(vae_then_mlp) -> None:
    root, _ = vae_then_mlp
    result = invoke(
        root,
        "study",
        "mlp",
        "--encoder",
        "vae",
        "--space",
        str(REPO / "search_spaces/logreg.yaml"),
        "--study-name",
        "logreg",
        "--n-trials",
        "3",
        "--pruner",
        "none",
        *SMALL,
    )
    assert result.exit_code == 0, result.output
    study = load_study(root, "logreg")
    assert study.user_attrs["settings"]["fixed"]["head.family"] == "linear"
    for trial in study.get_trials():
        assert set(trial.params) == {"train.optimizer", "train.lr", "train.weight_decay"}
    assert 0.3 < study.best_value <= 1.0  # ten classes: well above chance on real latents


def test_pixel_cnn_study_and_promotion(tmp_path: Path) -> None:
    study = invoke(
        tmp_path, "study", "cnn", "--n-trials", "2", "--epochs", "2", "--pruner", "none", *SMALL
    )
    assert study.exit_code == 0, study.output
    trials = load_study(tmp_path, "cnn-fashion-mnist").get_trials()
    assert all(0.4 < t.value <= 1.0 for t in trials)
    promoted = invoke(tmp_path, "promote", "cnn")
    assert promoted.exit_code == 0, promoted.output
    client = mlflow_client(tmp_path)
    experiment = client.get_experiment_by_name("cnn-fashion-mnist")
    [run] = client.search_runs([experiment.experiment_id], "tags.`vae_tune.role` = 'promotion'")
    assert 0.4 < run.data.metrics["test_accuracy"] <= 1.0
    assert not any(k.startswith("test_accuracy_logreg") for k in run.data.metrics)  # no latents
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/confusion_matrix.png" in plots
    assert client.get_model_version_by_alias("vae-tune-fashion-mnist-cnn", "champion")
