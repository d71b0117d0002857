"""The report: one Markdown file per dataset with every study's best values, its pruning funnel,
the champions' test metrics, the baselines, and the reference results side by side.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import optuna
from optuna.trial import TrialState

from vae_tune.analysis import pareto
from vae_tune.record import PromotionRecord, StudyRecord, TrialRecord
from vae_tune.space.stages import stage
from vae_tune.tracking.tracker import Tracker


def studies_of(
    storage: optuna.storages.BaseStorage, dataset: str | None = None
) -> list[optuna.Study]:
    """The storage's vae-tune studies (of one dataset, if given), oldest first."""
    found = []
    for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
        settings = StudyRecord(summary).stored_settings
        if settings and (dataset is None or settings.get("dataset") == dataset):
            found.append(optuna.load_study(study_name=summary.study_name, storage=storage))
    return found


REFERENCES = [
    ("conv AE + MLP head, Optuna-tuned (20 trials)", "Fashion-MNIST", "test accuracy 90.08 %"),
    ("CNN with augmentation", "Fashion-MNIST", "test accuracy 93.51 %"),
    ("VAE + logistic regression, latent 100", "Fashion-MNIST", "test error 0.1744"),
    ("multilayer CNN on pixels", "Fashion-MNIST", "test error 0.1135"),
    ("MLP VAE, latent 20, 200 epochs", "binarized MNIST", "negative ELBO 102.7 nats"),
    ("MLP VAE vs conv VAE, latent 2", "MNIST", "ELBO -142.8 vs -157.1; MSE 0.0375 vs 0.0444"),
    (
        "VAE, 1 stochastic layer, IWAE bound k=5000 (Burda et al. 2016)",
        "binarized MNIST",
        "test NLL 86.76 nats (IWAE trained with k=50: 84.78)",
    ),
]


def build_report(
    storage: optuna.storages.BaseStorage,
    tracker: Tracker,
    dataset: str,
    folder: Path | None = None,
) -> str:
    """The report's Markdown; pictures it shows (Pareto fronts) are written to `folder`."""
    studies = [StudyRecord(study) for study in studies_of(storage, dataset)]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# vae-tune report: {dataset}", "", f"Written {now}.", ""]
    lines += [
        "## Studies",
        "",
        "| study | stage | metric | complete | pruned | failed | best |",
        "|---|---|---|---|---|---|---|",
    ]
    for record in studies:
        study = record.live
        counts = Counter(t.state for t in study.get_trials(deepcopy=False))
        best = _best(study)
        directions = ", ".join(d.name.lower() for d in study.directions)
        lines.append(
            f"| {study.study_name} | {record.settings.stage} | "
            f"{', '.join(record.metrics)} ({directions}) | "
            f"{counts[TrialState.COMPLETE]} | {counts[TrialState.PRUNED]} | "
            f"{counts[TrialState.FAIL]} | {best} |"
        )
    lines += ["", "## Pruning funnel", "", "Trials pruned at each epoch (reported epochs).", ""]
    for record in studies:
        pruned = record.live.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
        funnel = Counter(TrialRecord(t).pruned_at_epoch for t in pruned)
        steps = ", ".join(f"epoch {e}: {n}" for e, n in sorted(funnel.items(), key=_epoch_key))
        lines.append(f"- {record.study.study_name}: {steps or 'none pruned'}")
    lines += ["", "## Champions (test split, evaluated once)", ""]
    for record in studies:
        lines += _test_reads(record)
        for trial, promoted in record.promotions.items():
            lines.append(f"### {record.study.study_name}, trial {trial}")
            lines.append("")
            lines.append(
                f"{promoted.model_name} version {promoted.model_version}{_model(promoted)}, "
                f"MLflow run `{promoted.run_id}`; the study's test split had been read "
                f"{promoted.test_reads} time(s) with this promotion."
            )
            lines += ["", "| metric | value |", "|---|---|"]
            lines += [f"| {k} | {v:.5g} |" for k, v in promoted.test.items()]
            if promoted.per_class_f1:
                lines += ["", "| class | test F1 |", "|---|---|"]
                lines += [f"| {k} | {v:.4f} |" for k, v in promoted.per_class_f1.items()]
            lines.append("")
    lines += _pareto_fronts(studies, folder)
    lines += _density_table(studies)
    lines += _curves(studies)
    lines += ["## Baselines (validation accuracy, logistic regression)", ""]
    for record in studies:
        study = record.live
        if not stage(record.settings.stage).needs_encoder:
            continue
        experiment_id = tracker.find_experiment(study.study_name)
        runs = tracker.runs(experiment_id, {"vae_tune.role": "baseline"}) if experiment_id else []
        for run in runs:
            accuracy = run.data.metrics.get("val_accuracy", float("nan"))
            lines.append(f"- {study.study_name}: {run.data.params['baseline']} {accuracy:.4f}")
    lines += [
        "",
        "## Reference results (from the design document)",
        "",
        "| source | setup | result |",
        "|---|---|---|",
    ]
    lines += [f"| {source} | {setup} | {result} |" for source, setup, result in REFERENCES]
    return "\n".join(lines) + "\n"


def _model(promoted: PromotionRecord) -> str:
    """What the registered model is, in words, where it is more than the trial retrained once."""
    views = " and over each image's mirror" if promoted.mirrored else ""
    if promoted.members > 1 and promoted.member_trials:  # not retrained: other trials' models
        trials = ", ".join(map(str, promoted.member_trials))
        said = f"trials {trials}: their own models, their class probabilities averaged{views}"
    elif promoted.members > 1:
        said = (
            f"the trial's configuration trained with {promoted.members} seeds, their class "
            f"probabilities averaged{views}"
        )
    elif promoted.mirrored:
        said = "class probabilities averaged over each image and its mirror"
    else:
        said = ""
    if not promoted.retrained:
        said = "; ".join(filter(None, [said, "not retrained: trained on the training split alone"]))
    return f" ({said})" if said else ""


def _test_reads(record: StudyRecord) -> list[str]:
    """Every read of the study's test split: a figure read many times is less of a test."""
    reads = record.test_reads
    if not reads:
        return []
    listed = "; ".join(f"{r.when} {r.command} trial {r.trial} ({r.why})" for r in reads)
    name = record.study.study_name
    return [f"Test split of {name} read {len(reads)} time(s): {listed}.", ""]


def _curves(studies: list[StudyRecord]) -> list[str]:
    """Learning curves of promoted configurations, beside the reports' figures."""
    lines = []
    for study in studies:
        for trial, curve in study.curves.items():
            lines += [
                f"### {study.study.study_name}, trial {trial} ({curve.evaluation})",
                "",
                f"MLflow run `{curve.run_id}`, {curve.epochs} epochs per size, "
                "test split read once per size.",
                "",
                "| training images | latent dim | train error | test error |",
                "|---|---|---|---|",
            ]
            lines += [
                f"| {r['size']} | {r['latent_dim'] or '-'} | {r['train_error']:.4f} | "
                f"{r['test_error']:.4f} |"
                for r in curve.rows
            ]
            lines.append("")
    if not lines:
        return []
    return [
        "## Learning curves",
        "",
        "The reference reports, on Fashion-MNIST with 60,000 training images: VAE + logistic "
        "regression (latent 100) test error 0.1744; multilayer CNN on pixels 0.1135.",
        "",
        *lines,
    ]


def _pareto_fronts(studies: list[StudyRecord], folder: Path | None) -> list[str]:
    """Multi-objective studies: their fronts as a plot and a table, the promoted trial marked."""
    lines = []
    for record in studies:
        study = record.live
        if len(study.directions) < 2 or not study.best_trials:
            continue
        promoted = max(record.promotions, default=None)
        name = f"{study.study_name}-pareto.png"
        if folder is not None:
            figure = pareto.front_figure(study, record.metrics, promoted)
            figure.savefig(folder / name, dpi=100)
        lines += [
            f"### {study.study_name}",
            "",
            f"![Pareto front of {study.study_name}]({name})",
            "",
            f"| trial | {' | '.join(record.metrics)} |",
            "|---|" + "---|" * len(record.metrics),
        ]
        for trial in sorted(study.best_trials, key=lambda t: t.values[0]):
            mark = " (promoted)" if trial.number == promoted else ""
            values = " | ".join(f"{v:.5g}" for v in trial.values)
            lines.append(f"| {trial.number}{mark} | {values} |")
        lines.append("")
    if not lines:
        return []
    return ["## Pareto fronts (multi-objective studies)", "", *lines]


def _density_table(studies: list[StudyRecord]) -> list[str]:
    """Promoted VAEs beside PPCA and a Gaussian mixture on the same test split."""
    rows = []
    for study in studies:
        for trial, record in study.promotions.items():
            if not record.density:
                continue
            model, test = record.model, record.test
            family, likelihood = model.get("model.family", "conv"), model.get("model.likelihood")
            what = f"{family} VAE, latent {model.get('model.latent_dim')}, {likelihood}"
            elbo, mse = -test["test_neg_elbo"], test["test_mse"]
            name = study.study.study_name
            rows.append(f"| {name} trial {trial} | {what} | {elbo:.2f} (ELBO) | {mse:.4f} |")
            if "test_nll_iwae" in test:
                k = int(test.get("iwae_k", 0))
                bound = -test["test_nll_iwae"]
                rows.append(
                    f"| {name} trial {trial} | the same, IWAE bound | {bound:.2f} "
                    f"(IWAE, k = {k}) | {mse:.4f} |"
                )
            for baseline, scores in record.density.items():
                kind, dim = baseline.split("-")
                label = "PPCA" if kind == "ppca" else "Gaussian mixture (diagonal)"
                size = "latent" if kind == "ppca" else "components"
                rows.append(
                    f"| baseline | {label}, {size} {dim} | "
                    f"{scores['log_likelihood']:.2f} | {scores['mse']:.4f} |"
                )
    if not rows:
        return []
    return [
        "## VAEs and density baselines (test split)",
        "",
        "Log-likelihood per image in nats: the VAE's ELBO and its importance-weighted bound with k"
        " samples (IWAE, Burda et al. 2016: tighter as k grows; both lower bounds), and the "
        "baselines' exact test log-likelihood. A bernoulli VAE's is over dynamically binarized "
        "pixels, the baselines' a density over pixel values in [0, 1]: compare within a "
        "likelihood, not across. Published on dynamically binarized MNIST: a VAE with one "
        "stochastic layer, IWAE bound with k = 5000, test NLL 86.76 nats (an IWAE trained with "
        "k = 50: 84.78); an MLP VAE at latent 20 after 200 epochs, negative ELBO 102.7.",
        "",
        "| model | setup | log-likelihood (nats) | MSE |",
        "|---|---|---|---|",
        *rows,
        "",
    ]


def _best(study: optuna.Study) -> str:
    if len(study.directions) > 1:
        return "Pareto front: trials " + ", ".join(str(t.number) for t in study.best_trials)
    try:
        return f"{study.best_value:.5g} (trial {study.best_trial.number})"
    except ValueError:
        return "-"


def _epoch_key(item: tuple[object, int]) -> int:
    epoch = item[0]
    return int(epoch) if isinstance(epoch, int | str) and str(epoch).isdigit() else 10**9
