"""The VAE measured as the field measures it: active units and KL per dimension, the
importance-weighted bound, a linear probe as an objective, multi-objective studies."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch

from tests.helpers import invoke, load_study, mlflow_client, promotion_runs, runs_of
from vae_tune.analysis.pareto import pick
from vae_tune.data.splits import load_splits
from vae_tune.errors import VaeTuneError
from vae_tune.evaluation.latents import iwae_nll, posterior_stats
from vae_tune.models.config import build_config
from vae_tune.models.nets import ConvVAE, build_model
from vae_tune.models.train import evaluate, fit

SMALL = ["--epochs", "2", "--train-size", "1000", "--val-size", "500"]


@pytest.fixture(scope="module")
def trained(real_data: Path) -> tuple[ConvVAE, torch.Tensor]:
    """A small bernoulli VAE trained briefly on MNIST, and held-out images."""
    splits = load_splits("mnist", real_data, val_size=1000, train_size=3000)
    cfg = build_config({"model.likelihood": "bernoulli", "model.latent_dim": 8,
                        "model.channels": [8, 16, 32], "train.epochs": 2})  # fmt: skip
    torch.manual_seed(0)
    model = build_model("vae", cfg.model)
    assert isinstance(model, ConvVAE)
    fit(model, (splits.train_x,), None, cfg.train)
    return model, splits.val_x


def test_iwae_with_one_sample_is_the_elbo(trained) -> None:
    model, images = trained
    elbo = evaluate(model, (images,))["neg_elbo"]  # analytic KL, one sample of z
    one = [iwae_nll(model, images, k=1, seed=s) for s in range(3)]
    assert abs(sum(one) / 3 - elbo) < 0.01 * elbo  # the same bound, sampled: within noise


def test_the_bound_tightens_with_more_samples(trained) -> None:
    model, images = trained
    k1, k50 = iwae_nll(model, images, k=1, seed=0), iwae_nll(model, images, k=50, seed=0)
    assert k50 <= k1  # more importance samples: a tighter bound, a lower NLL estimate
    with pytest.raises(ValueError, match="k must be at least 1"):
        iwae_nll(model, images, k=0)


def test_a_dead_dimension_is_not_active_and_carries_no_kl(trained) -> None:
    model, images = trained
    d = model.cfg.latent_dim
    last = model.encoder[-1]  # the layer that outputs (mu, logvar)
    with torch.no_grad():
        for row in (0, d):  # dimension 0's mean and log-variance: constant zero
            last.weight[row].zero_()
            last.bias[row].zero_()
    kl, active = posterior_stats(model, images)
    assert len(kl) == d and kl[0] == pytest.approx(0.0, abs=1e-6)
    assert active <= d - 1


def test_knee_and_single_objective_picks_from_the_front() -> None:
    study = optuna.create_study(directions=["minimize", "maximize"])
    for elbo, probe in [(100.0, 0.70), (110.0, 0.80), (130.0, 0.82), (105.0, 0.60)]:
        study.add_trial(optuna.trial.create_trial(values=[elbo, probe]))
    objectives = {"elbo": 0, "probe": 1}
    assert pick(study, objectives, "elbo")[0].number == 0
    assert pick(study, objectives, "probe")[0].number == 2
    knee, rule = pick(study, objectives, "knee")
    assert knee.number == 1 and "knee" in rule  # trial 3 is dominated: not on the front
    with pytest.raises(VaeTuneError, match="--pick 'nonsense'"):
        pick(study, objectives, "nonsense")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["study", "vae", "--objective", "beauty"], "unknown objective 'beauty' for vae"),
        (["study", "mlp", "--objective", "probe"], "the mlp stage has no latents"),
        (["study", "vae", "--objective", "elbo,probe", "--patience", "2"], "needs one objective"),
        (["promote", "vae", "--iwae-k", "0"], "--iwae-k"),
    ],
)
def test_bad_objectives_and_samples_are_clear_errors(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = invoke(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_vae_trials_log_active_units_every_epoch_and_promotion_the_iwae_bound(
    tmp_path: Path,
) -> None:
    result = invoke(tmp_path, "study", "vae", "--n-trials", "2", "--pruner", "none", *SMALL)
    assert result.exit_code == 0, result.output
    client, _, children = runs_of(tmp_path, "vae-fashion-mnist")
    assert len(children) == 2
    for run in children:
        history = client.get_metric_history(run.info.run_id, "active_units")
        assert sorted(m.step for m in history) == [1, 2]
        assert all(0 <= m.value <= int(run.data.params["model.latent_dim"]) for m in history)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"kl_per_dim.png", "kl_per_dim.json"} <= artifacts
    promoted = invoke(tmp_path, "promote", "vae", "--iwae-k", "50")
    assert promoted.exit_code == 0, promoted.output
    [run] = promotion_runs(tmp_path, "vae-fashion-mnist")
    metrics = run.data.metrics
    assert metrics["iwae_k"] == 50
    assert metrics["test_nll_iwae"] <= metrics["test_neg_elbo"]
    report = (tmp_path / "reports" / "fashion-mnist.md").read_text()
    assert "(IWAE, k = 50)" in report and "86.76" in report


@pytest.mark.slow
def test_elbo_and_probe_make_a_multi_objective_study(tmp_path: Path) -> None:
    args = ["--objective", "elbo,probe", "--n-trials", "2", *SMALL]
    result = invoke(tmp_path, "study", "vae", *args)
    assert result.exit_code == 0, result.output
    assert "no pruning" in result.output and "Pareto front" in result.output
    study = load_study(tmp_path, "vae-fashion-mnist")
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE"]
    assert study.metric_names == ["val_neg_elbo", "val_probe_accuracy"]
    client, _, children = runs_of(tmp_path, "vae-fashion-mnist")
    for run in children:  # each epoch's probe accuracy, pruning or not
        assert len(client.get_metric_history(run.info.run_id, "val_probe_accuracy")) == 2
    promoted = invoke(tmp_path, "promote", "vae", "--pick", "probe", "--iwae-k", "5")
    assert promoted.exit_code == 0, promoted.output
    [run] = promotion_runs(tmp_path, "vae-fashion-mnist")
    rule = run.data.tags["promotion.selection_rule"]
    assert "Pareto front's best probe" in rule and "--pick probe" in rule
    assert "plots/pareto_front.png" in {
        a.path for a in mlflow_client(tmp_path).list_artifacts(run.info.run_id, "plots")
    }
    report = (tmp_path / "reports" / "fashion-mnist.md").read_text()
    assert (
        "## Pareto fronts" in report
        and (tmp_path / "reports" / "vae-fashion-mnist-pareto.png").is_file()
    )
    assert json.loads(run.data.tags["promotion.seeds"])
