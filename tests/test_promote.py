"""Promotion on real Fashion-MNIST: champion on validation, one test read, registry, pictures,
report; the head study consumes the promoted encoder; studies never read the test split."""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.helpers import (
    REPO,
    VAE_TUNE,
    Output,
    data_dir,
    free_port,
    invoke,
    listening,
    load_study,
    mlflow_client,
    promotion_runs,
    start,
)
from vae_tune.data.splits import load_test
from vae_tune.models.nets import Ensemble
from vae_tune.record import StudyRecord
from vae_tune.tracking.tracker import Tracker

pytestmark = pytest.mark.slow  # real studies on real data, subprocesses, servers

SMALL = ["--train-size", "1000", "--val-size", "500"]


def promoted_project(root: Path) -> list[str]:
    """The natural path on a small subset: AE study, its promotion, head study, promotion."""
    steps = [
        ["study", "ae", "--n-trials", "3", "--epochs", "2", *SMALL],
        ["promote", "ae", "--top-k", "2", "--seeds", "1"],
        ["study", "mlp", "--encoder", "ae", "--n-trials", "3", "--epochs", "10", *SMALL],
        ["promote", "mlp", "--encoder", "ae", "--members", "2"],  # an ensemble of two seeds
    ]
    outputs = []
    for args in steps:
        result = invoke(root, *args)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    return outputs


@pytest.fixture(scope="module")
def promoted(tmp_path_factory):
    """Read only: the tests that write to a promoted project have one of their own."""
    root = tmp_path_factory.mktemp("promoted")
    return root, promoted_project(root)


@pytest.fixture(scope="module")
def curved(tmp_path_factory):
    """The learning-curve tests' own promoted project: each writes the curve of one study."""
    root = tmp_path_factory.mktemp("curved")
    promoted_project(root)
    return root


@pytest.fixture
def ae_promoted(tmp_path: Path) -> Path:
    """A test's own promoted AE study, to promote again."""
    for args in (
        ["study", "ae", "--n-trials", "2", "--epochs", "1", *SMALL],
        ["promote", "ae", "--top-k", "1"],
    ):
        result = invoke(tmp_path, *args)
        assert result.exit_code == 0, result.output
    return tmp_path


def test_champion_is_chosen_on_validation_with_seeds(promoted) -> None:
    root, outputs = promoted
    study = load_study(root, "ae-fashion-mnist")
    [run] = promotion_runs(root, "ae-fashion-mnist")
    record = StudyRecord(study).promotions[int(run.data.tags["optuna.trial_number"])]
    assert record.test_reads == 1 and record.run_id == run.info.run_id
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
        # Where users look first, the registry says how to use the graph, .eval() included.
        assert f'load_model("models:/vae-tune-fashion-mnist-{stage}@champion")' in (
            version.description
        )
        assert "Do not call `model.eval()`" in version.description
    version = tracker.champion("vae-tune-fashion-mnist-mlp")
    classifier = tracker.load_model("vae-tune-fashion-mnist-mlp", version.version)
    assert isinstance(classifier, Ensemble) and len(classifier.members) == 2 and classifier.mirror
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
    # --members 2: the champion retrained with two seeds, averaged, tested once as one model.
    # Trained on mirrored images (train.augment auto: flip_alt_shift), it averages mirrors too.
    assert "2 seeds averaged, with mirrored images" in outputs[3] and "member 2 of 2" in outputs[3]
    assert run.data.tags["promotion.mirrored"] == "true"
    assert (
        run.data.tags["promotion.members"] == "2" and run.data.tags["promotion.test_reads"] == "1"
    )
    study = load_study(root, "mlp-ae-fashion-mnist")
    assert StudyRecord(study).promotions[int(run.data.tags["optuna.trial_number"])].members == 2
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
    assert "2 seeds, their class probabilities averaged and over each image's mirror" in report
    assert "Ankle boot" in report and "Pruning funnel" in report


def test_second_promotion_does_not_read_test_again_unless_forced(ae_promoted: Path) -> None:
    root = ae_promoted
    again = invoke(root, "promote", "ae", "--top-k", "1")
    assert again.exit_code == 0, again.output
    assert "the test split is not read again" in again.output
    assert len(promotion_runs(root, "ae-fashion-mnist")) == 1
    averaged = invoke(root, "promote", "ae", "--members", "2", "--force")
    assert averaged.exit_code == 2 and "Traceback" not in averaged.output
    assert "--members 2: only a classifier's champion" in averaged.output
    mirrored = invoke(root, "promote", "ae", "--mirror", "--force")
    assert mirrored.exit_code == 2 and "--mirror: a ae study has no classes" in mirrored.output
    assert len(promotion_runs(root, "ae-fashion-mnist")) == 1  # refused before its test read
    forced = invoke(root, "promote", "ae", "--top-k", "1", "--force")
    assert forced.exit_code == 0, forced.output
    assert (
        "(re-promotion of trial" in forced.output and "read 2, 1 before this one" in forced.output
    )
    runs = promotion_runs(root, "ae-fashion-mnist")
    assert len(runs) == 2
    assert sorted(r.data.tags["promotion.forced"] for r in runs) == ["false", "true"]
    assert sorted(r.data.tags["promotion.test_reads"] for r in runs) == ["1", "2"]
    study = load_study(root, "ae-fashion-mnist")
    assert [r.why for r in StudyRecord(study).test_reads] == ["promotion", "re-promotion"]
    tracker = Tracker(f"sqlite:///{root / 'mlflow.db'}")
    assert str(tracker.champion("vae-tune-fashion-mnist-ae").version) == "2"


def test_a_new_champion_after_a_top_up_is_the_studys_second_test_read(tmp_path: Path) -> None:
    """Reads belong to the study: another trial promoted after a top-up is read number 2."""
    import optuna

    from vae_tune.project.storage import open_storage

    storage = open_storage(str(tmp_path / "studies" / "optuna.journal"), write=True)
    study = optuna.create_study(study_name="ae-fashion-mnist", storage=storage)
    # A first trial that barely learns, then, after the top-up, one that clearly does.
    weak = {"model.latent_dim": 8, "model.dropout": 0.3, "train.weight_decay": 1e-3}
    study.enqueue_trial({**weak, "train.optimizer": "adam", "train.lr": 3e-4})
    args = ["--epochs", "1", "--pruner", "none", *SMALL]
    assert invoke(tmp_path, "study", "ae", "--n-trials", "1", *args).exit_code == 0
    assert invoke(tmp_path, "promote", "ae", "--top-k", "1").exit_code == 0
    strong = {"model.latent_dim": 128, "model.dropout": 0.0, "train.weight_decay": 1e-7}
    study.enqueue_trial({**strong, "train.optimizer": "adam", "train.lr": 5e-3})
    topped = invoke(tmp_path, "study", "ae", "--n-trials", "2", *args)
    assert topped.exit_code == 0, topped.output
    assert load_study(tmp_path, "ae-fashion-mnist").best_trial.number == 1, topped.output
    second = invoke(tmp_path, "promote", "ae", "--top-k", "1")
    assert second.exit_code == 0, second.output
    assert "(promotion of trial 1): read 2, 1 before this one" in second.output
    assert "test split (read 2 time(s))" in " ".join(second.output.split())
    run = next(
        r
        for r in promotion_runs(tmp_path, "ae-fashion-mnist")
        if r.data.tags["optuna.trial_number"] == "1"
    )
    assert run.data.tags["promotion.test_reads"] == "2"
    reads = StudyRecord(load_study(tmp_path, "ae-fashion-mnist")).test_reads
    assert [(r.trial, r.command) for r in reads] == [(0, "promote"), (1, "promote")]
    report = (tmp_path / "reports" / "fashion-mnist.md").read_text()
    assert "Test split of ae-fashion-mnist read 2 time(s)" in report


def test_a_promotion_killed_at_its_test_read_leaves_the_read_on_the_study(tmp_path: Path) -> None:
    first = invoke(tmp_path, "study", "ae", "--n-trials", "1", "--epochs", "1", *SMALL)
    assert first.exit_code == 0, first.output
    output = Output(start([VAE_TUNE, "promote", "ae"], tmp_path))
    deadline = time.monotonic() + 300
    while not StudyRecord(load_study(tmp_path)).test_reads:  # the read, as it is recorded
        assert output.process.poll() is None and time.monotonic() < deadline, output.text
        time.sleep(0.05)
    output.process.send_signal(signal.SIGKILL)
    output.wait(timeout=60)
    [read] = StudyRecord(load_study(tmp_path)).test_reads
    assert (read.command, read.why) == ("promote", "promotion")
    assert not StudyRecord(load_study(tmp_path)).promotions  # it never finished
    again = invoke(tmp_path, "promote", "ae")
    assert again.exit_code == 0, again.output
    assert "read 2, 1 before this one" in again.output


def test_a_promotion_that_fails_after_its_read_ends_its_run_failed(tmp_path: Path) -> None:
    """An IWAE bound that does not fit (here: k past what any machine holds) after the read."""
    doc = yaml.safe_load((REPO / "search_spaces/vae.yaml").read_text())
    del doc["study"]["min_active_units"]
    space = tmp_path / "vae.yaml"
    space.write_text(yaml.safe_dump(doc))
    args = ["--space", str(space), "--n-trials", "1", "--epochs", "1", "--pruner", "none"]
    assert invoke(tmp_path, "study", "vae", *args, *SMALL).exit_code == 0
    failed = invoke(tmp_path, "promote", "vae", "--iwae-k", str(10**12))
    assert failed.exit_code == 1, failed.output
    assert "out of memory" in failed.output and "Traceback" not in failed.output
    [run] = promotion_runs(tmp_path, "vae-fashion-mnist")
    assert run.info.status == "FAILED" and run.data.tags["fail_reason"]
    assert len(StudyRecord(load_study(tmp_path, "vae-fashion-mnist")).test_reads) == 1


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
    result = invoke(tmp_path, "promote", "vae", "--iwae-k", "5")
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
def test_learning_curve_retrains_the_champion_on_growing_subsets(curved: Path, stage: str) -> None:
    root = curved
    result = invoke(root, "curve", stage, "--sizes", "200,1500")
    assert result.exit_code == 0, result.output
    name = "ae-fashion-mnist" if stage == "ae" else "mlp-ae-fashion-mnist"
    study = StudyRecord(load_study(root, name))
    [(trial, record)] = study.curves.items()
    assert trial in study.promotions  # the promoted configuration
    assert [r["size"] for r in record.rows] == [200, 1500]
    assert record.test_reads == 2
    for row in record.rows:
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
    assert expected in record.evaluation


def test_learning_curve_refuses_sizes_beyond_the_pool(curved: Path) -> None:
    root = curved
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


# Run in a fresh process in which `import vae_tune` fails: what MLflow alone makes of a champion.
BLOCK_VAE_TUNE = """
import sys

class NoVaeTune:
    def find_spec(self, name, path=None, target=None):
        if name == "vae_tune" or name.startswith("vae_tune."):
            raise ImportError("vae_tune is blocked: MLflow alone must read the champion")

sys.meta_path.insert(0, NoVaeTune())
"""
MLFLOW_ALONE = """
import gzip, json, sys
import numpy as np, torch, mlflow, mlflow.pyfunc, mlflow.pytorch

def idx(path):
    raw = gzip.open(path).read()
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(raw[3])]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * len(dims)).reshape(dims)

data = sys.argv[1]
x = idx(f"{data}/t10k-images-idx3-ubyte.gz").astype(np.float32)[:, None] / 255.0
y = idx(f"{data}/t10k-labels-idx1-ubyte.gz")
model = mlflow.pytorch.load_model("models:/vae-tune-fashion-mnist-mlp@champion")
with torch.no_grad():
    logits = torch.cat([model(torch.from_numpy(x[i : i + 1000])) for i in range(0, len(x), 1000)])
accuracy = float((logits.argmax(1).numpy() == y).mean())
predicted = mlflow.pyfunc.load_model("models:/vae-tune-fashion-mnist-mlp@champion").predict(x[:64])
encoder = mlflow.pytorch.load_model("models:/vae-tune-fashion-mnist-ae@champion")
decoder_uri = mlflow.MlflowClient().get_model_version_by_alias(
    "vae-tune-fashion-mnist-ae", "champion").tags["vae_tune.decoder"]
decoder = mlflow.pytorch.load_model(decoder_uri)
with torch.no_grad():
    z = encoder(torch.from_numpy(x[:8]))
    images = decoder(z)
print(json.dumps({
    "imported_vae_tune": "vae_tune" in sys.modules,
    "accuracy": accuracy,
    "pyfunc_shape": list(np.asarray(predicted).shape),
    "latents": list(z.shape),
    "decoded": list(images.shape),
}))
"""


def mlflow_alone(root: Path, blocker: Path, block: str) -> dict:
    """MLFLOW_ALONE's facts on the project at `root`, from a fresh process whose imports
    `block` (a sitecustomize.py) refuses; it must not have imported vae-tune."""
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(block)
    script = blocker / "mlflow_alone.py"
    script.write_text(MLFLOW_ALONE)
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "PYTHONPATH": str(blocker),
    }
    done = subprocess.run(
        [sys.executable, str(script), str(data_dir() / "fashion-mnist")],
        cwd=blocker,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["imported_vae_tune"] is False
    return facts


def serve(root: Path, model: str, blocker: Path, images: list) -> list:
    """`mlflow models serve` of a registered champion, one REST request, its predictions."""
    port, bin_dir = free_port(), Path(sys.executable).parent
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "PYTHONPATH": str(blocker),
        # MLflow starts uvicorn by name: this venv's, even when pytest runs un-activated.
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [
        str(bin_dir / "mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{model}@champion",
        "--env-manager",
        "local",
        "-p",
        str(port),
    ]
    log = blocker / f"serve-{model}.log"
    with log.open("wb") as out:
        server = subprocess.Popen(command, cwd=blocker, env=environment, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 180
        while not listening(port):
            alive = server.poll() is None and time.monotonic() < deadline
            assert alive, f"the server ended or never listened:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        body = json.dumps({"inputs": images}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())["predictions"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_champions_load_predict_and_serve_with_mlflow_alone(promoted, tmp_path: Path) -> None:
    root, _ = promoted
    blocker = tmp_path / "blocker"
    facts = mlflow_alone(root, blocker, BLOCK_VAE_TUNE)
    [run] = promotion_runs(root, "mlp-ae-fashion-mnist")
    assert facts["accuracy"] == pytest.approx(run.data.metrics["test_accuracy"], abs=0.001)
    assert facts["pyfunc_shape"] == [64, 10]
    [ae_run] = promotion_runs(root, "ae-fashion-mnist")
    latent_dim = int(ae_run.data.params["model.latent_dim"])
    assert facts["latents"] == [8, latent_dim] and facts["decoded"] == [8, 1, 28, 28]

    images = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32).tolist()
    logits = serve(root, "vae-tune-fashion-mnist-mlp", blocker, images)
    assert np.asarray(logits).shape == (3, 10)
    latents = serve(root, "vae-tune-fashion-mnist-ae", blocker, images)
    assert np.asarray(latents).shape == (3, latent_dim)
