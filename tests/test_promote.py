"""Promotion on real Fashion-MNIST: champion on validation, one test read, registry, pictures,
report; the head study consumes the promoted encoder; studies never read the test split."""

from __future__ import annotations

import gzip
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import REPO, data_dir, invoke, load_study, mlflow_client, promotion_runs
from vae_tune.data import load_test
from vae_tune.tracking import Tracker

pytestmark = pytest.mark.slow  # real studies on real data, subprocesses, servers

SMALL = ["--train-size", "1000", "--val-size", "500"]


@pytest.fixture(scope="module")
def promoted(tmp_path_factory):
    root = tmp_path_factory.mktemp("promoted")
    steps = [
        ["study", "ae", "--n-trials", "3", "--epochs", "2", *SMALL],
        ["promote", "ae", "--top-k", "2", "--seeds", "1"],
        ["study", "mlp", "--encoder", "ae", "--n-trials", "3", "--epochs", "10", *SMALL],
        ["promote", "mlp", "--encoder", "ae"],
    ]
    outputs = []
    for args in steps:
        result = invoke(root, *args)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    return root, outputs


def test_champion_is_chosen_on_validation_with_seeds(promoted) -> None:
    root, outputs = promoted
    study = load_study(root, "ae-fashion-mnist")
    [run] = promotion_runs(root, "ae-fashion-mnist")
    record = study.user_attrs["promotions"][run.data.tags["optuna.trial_number"]]
    assert record["test_reads"] == 1 and record["run_id"] == run.info.run_id
    # Top 2 by validation value, each with one extra seed; the champion has the best mean.
    assert "over 2 runs" in outputs[1]
    assert "top 2 complete trials, 1 extra seed(s)" in run.data.tags["promotion.selection_rule"]
    assert (
        run.data.tags["source.run_id"]
        == study.trials[int(run.data.tags["optuna.trial_number"])].user_attrs["mlflow_run_id"]
    )
    assert {"test_mse", "val_val_loss_mean", "val_val_loss_std"} <= set(run.data.metrics)


def test_models_are_registered_with_the_champion_alias(promoted) -> None:
    root, _ = promoted
    tracker = Tracker(f"sqlite:///{root / 'mlflow.db'}")
    for stage in ("ae", "mlp"):
        version = tracker.champion(f"vae-tune-fashion-mnist-{stage}")
        assert version is not None and str(version.version) == "1"
        assert version.tags["stage"] == stage
    version = tracker.champion("vae-tune-fashion-mnist-mlp")
    classifier = tracker.load_model("vae-tune-fashion-mnist-mlp", version.version)
    x, y = load_test("fashion-mnist", data_dir())
    with torch.no_grad():
        accuracy = (classifier(x[:500]).argmax(1) == y[:500]).float().mean().item()
    [run] = promotion_runs(root, "mlp-ae-fashion-mnist")
    assert accuracy == pytest.approx(run.data.metrics["test_accuracy"], abs=0.05)


def test_head_study_consumed_the_promoted_encoder(promoted) -> None:
    root, outputs = promoted
    assert "encoder: vae-tune-fashion-mnist-ae version 1 (alias champion)" in outputs[2]
    lineage = load_study(root, "mlp-ae-fashion-mnist").user_attrs["settings"]["encoder"]
    assert lineage["encoder.source"] == "registry" and lineage["encoder.version"] == "1"
    [run] = promotion_runs(root, "mlp-ae-fashion-mnist")
    assert run.data.tags["encoder.version"] == "1"


def test_classifier_test_metrics_pictures_and_report(promoted) -> None:
    root, outputs = promoted
    [run] = promotion_runs(root, "mlp-ae-fashion-mnist")
    metrics = run.data.metrics
    # 1,000 training images and 40 head steps: above chance (0.1) is what can be asked.
    assert 0.15 < metrics["test_accuracy"] <= 1.0
    assert 0.0 < metrics["test_macro_f1"] <= metrics["test_accuracy"] + 0.1
    for name in ("logreg_latents", "logreg_pca", "logreg_pixels"):
        assert 0.4 < metrics[f"test_accuracy_{name}"] <= 1.0, name
    assert "Ankle boot" in outputs[3]  # the per-class F1 table names the classes
    client = mlflow_client(root)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"plots", "model", "report.md", "per_class_f1.json", "candidates.json"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == [
        "plots/confusion_matrix.png"
    ]
    [ae_run] = promotion_runs(root, "ae-fashion-mnist")
    ae_plots = {a.path for a in client.list_artifacts(ae_run.info.run_id, "plots")}
    assert ae_plots == {
        "plots/reconstructions.png",
        "plots/interpolation.png",
        "plots/latent_projection.png",
    }
    report = (root / "reports" / "fashion-mnist.md").read_text()
    assert "### mlp-ae-fashion-mnist, trial" in report and "90.08 %" in report
    assert "Ankle boot" in report and "Pruning funnel" in report


def test_second_promotion_does_not_read_test_again_unless_forced(promoted) -> None:
    root, _ = promoted
    again = invoke(root, "promote", "ae", "--top-k", "2", "--seeds", "1")
    assert again.exit_code == 0, again.output
    assert "the test split is not read again" in again.output
    assert len(promotion_runs(root, "ae-fashion-mnist")) == 1
    forced = invoke(root, "promote", "ae", "--top-k", "2", "--seeds", "1", "--force")
    assert forced.exit_code == 0, forced.output
    runs = promotion_runs(root, "ae-fashion-mnist")
    assert len(runs) == 2
    assert sorted(r.data.tags["promotion.forced"] for r in runs) == ["false", "true"]
    records = load_study(root, "ae-fashion-mnist").user_attrs["promotions"]
    assert [r["test_reads"] for r in records.values()] == [2]
    tracker = Tracker(f"sqlite:///{root / 'mlflow.db'}")
    assert str(tracker.champion("vae-tune-fashion-mnist-ae").version) == "2"


def test_vae_promotion_logs_the_test_elbo_density_baselines_and_2d_views(tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "search_spaces/vae.yaml").read_text())
    del doc["search"]["model.latent_dim"]
    doc["fixed"]["model.latent_dim"] = 2  # the reports' latent-2 comparison
    del doc["study"]["min_active_units"]  # 1,000 images, 2 epochs: not the place to judge collapse
    space = tmp_path / "vae2.yaml"
    space.write_text(yaml.safe_dump(doc))
    study = invoke(
        tmp_path,
        "study",
        "vae",
        "--space",
        str(space),
        "--n-trials",
        "2",
        "--epochs",
        "2",
        "--pruner",
        "none",
        *SMALL,
    )
    assert study.exit_code == 0, study.output
    result = invoke(tmp_path, "promote", "vae")
    assert result.exit_code == 0, result.output
    [run] = promotion_runs(tmp_path, "vae-fashion-mnist")
    metrics = run.data.metrics
    assert {"test_neg_elbo", "test_kl", "test_recon", "test_mse"} <= set(metrics)
    # PPCA and the mixture on the same test images: finite log-likelihoods, sensible MSEs.
    for name in ("ppca2", "gmm2"):
        assert math.isfinite(metrics[f"test_{name}_log_likelihood"])
        assert 0.0 < metrics[f"test_{name}_mse"] < 0.2
    # PPCA with 2 components reconstructs better than the mean of one of 2 clusters.
    assert metrics["test_ppca2_mse"] < metrics["test_gmm2_mse"]
    plots = {a.path for a in mlflow_client(tmp_path).list_artifacts(run.info.run_id, "plots")}
    assert {"plots/prior_samples.png", "plots/latent_scatter.png", "plots/latent_grid.png"} <= plots
    report = (tmp_path / "reports" / "fashion-mnist.md").read_text()
    assert "## VAEs and density baselines (test split)" in report
    assert "| baseline | PPCA, latent 2 |" in report
    assert "conv VAE, latent 2, gaussian" in report


def test_studies_never_read_the_test_split(tmp_path: Path, real_data: Path) -> None:
    """The test files here are garbage: a study that touched them would fail; promotion does."""
    data = tmp_path / "data" / "fashion-mnist"
    data.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(real_data / "fashion-mnist" / name, data)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        with gzip.open(data / name, "wb") as f:
            f.write(b"not an IDX file")
    project = tmp_path / "project"
    project.mkdir()
    args = ["--data-dir", str(tmp_path / "data"), *SMALL]
    for command in (
        ["study", "ae", "--n-trials", "2", "--epochs", "2", *args],
        ["study", "mlp", "--n-trials", "2", "--epochs", "2", *args],
    ):
        result = invoke(project, *command)
        assert result.exit_code == 0, result.output
    promotion = invoke(project, "promote", "ae", "--data-dir", str(tmp_path / "data"))
    assert promotion.exit_code == 2
    assert "t10k-images-idx3-ubyte.gz is not an unsigned-byte IDX file" in promotion.output


@pytest.mark.parametrize("stage", ["ae", "mlp"])
def test_learning_curve_retrains_the_champion_on_growing_subsets(promoted, stage: str) -> None:
    root, _ = promoted
    result = invoke(root, "curve", stage, "--sizes", "200,1500")
    assert result.exit_code == 0, result.output
    name = "ae-fashion-mnist" if stage == "ae" else "mlp-ae-fashion-mnist"
    study = load_study(root, name)
    [(trial, record)] = study.user_attrs["curves"].items()
    assert trial in study.user_attrs["promotions"]  # the promoted configuration
    assert [r["size"] for r in record["rows"]] == [200, 1500]
    assert record["test_reads"] == 2
    for row in record["rows"]:
        assert 0.0 <= row["train_error"] < 0.9 and 0.0 < row["test_error"] < 0.9
    client = mlflow_client(root)
    experiment = client.get_experiment_by_name(name)
    [run] = client.search_runs([experiment.experiment_id], "tags.`vae_tune.role` = 'curve'")
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "test_error")
    assert [m.step for m in history] == [200, 1500]
    assert "plots/learning_curve.png" in {
        a.path for a in client.list_artifacts(run.info.run_id, "plots")
    }
    report = (root / "reports" / "fashion-mnist.md").read_text()
    assert f"### {name}, trial {trial}" in report
    expected = "logistic regression on the latents" if stage == "ae" else "classifier's own"
    assert expected in record["evaluation"]


def test_learning_curve_refuses_sizes_beyond_the_pool(promoted) -> None:
    root, _ = promoted
    result = invoke(root, "curve", "ae", "--sizes", "500,99999")
    assert result.exit_code == 2
    assert "--sizes [99999]" in result.output and "pool holds 1500 images" in result.output


def test_learning_curve_needs_a_promotion(tmp_path: Path) -> None:
    assert (
        invoke(tmp_path, "study", "ae", "--n-trials", "1", "--epochs", "1", *SMALL).exit_code == 0
    )
    result = invoke(tmp_path, "curve", "ae", "--sizes", "100")
    assert result.exit_code == 2
    assert "no promoted trial: run `vae-tune promote ae` first" in result.output
