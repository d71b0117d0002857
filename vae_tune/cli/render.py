"""What the commands print: rich tables and summaries, on one console. Nothing here decides an
exit code or computes a result; it shows what a use case returned."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

    from vae_tune.api import (
        Curve,
        DatasetInfo,
        Finding,
        PipelineResult,
        Promotion,
        StudyResult,
        Submitted,
    )
    from vae_tune.progress import LiveProgress

# No markup: log lines carry user text (reasons, shapes like [128, 1, 28, 28]) to print as is.
console = Console(highlight=False, soft_wrap=True, markup=False)  # commands stay copyable
errors = Console(stderr=True, highlight=False, soft_wrap=True)

STATE_WORDS = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}
STATE_COLUMNS = ("complete", "pruned", "fail", "running")  # `status` rows count trials by these


def live_progress() -> LiveProgress | None:
    """Live bars for a study in a terminal; None elsewhere (plain lines in logs, pipes, CI)."""
    from vae_tune.progress import LiveProgress

    return LiveProgress(console) if console.is_terminal else None


def shown(path: str | Path) -> str:
    """A path relative to the current folder (the CLI's project) when inside it: shorter
    commands to copy."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def fmt(value: object) -> str:
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], **kw: Any) -> None:
    shown = Table(title=title, **kw)
    for column in columns:
        shown.add_column(column, overflow="fold")
    for row in rows:
        shown.add_row(*(fmt(cell) for cell in row))
    console.print(shown)


def study_summary(result: StudyResult) -> None:
    summary = result.summary
    rows: list[tuple[str, str]] = [
        (STATE_WORDS.get(state, state.lower()), str(n)) for state, n in summary.counts.items()
    ]
    if summary.best_value is not None:
        rows.append(("best value", f"{summary.best_value:.6g} (trial {summary.best_trial})"))
        for name, value in summary.best_params.items():
            rows.append((f"  {name}", f"{value:.4g}" if isinstance(value, float) else str(value)))
        rows.append(("best MLflow run", str(summary.best_run_id)))
    if summary.pareto:
        rows.append(("Pareto front", "trials " + ", ".join(map(str, summary.pareto))))
    if summary.stop_reason:
        rows.append(("stopped early", summary.stop_reason))
    table(f"study {summary.study_name}", ("", ""), rows, show_header=False)
    console.print("Watch and compare: `vae-tune ui` serves both, here:")
    console.print(f"  {result.dashboard_url}")
    console.print(f"  {result.mlflow_url}")
    console.print("or serve them yourself:")
    console.print(f"  {result.dashboard_command}")
    console.print(f"  {result.mlflow_command}")


def promotion(result: Promotion) -> None:
    candidates: list[tuple[object, ...]] = [
        (
            c.trial.number,
            c.mean,
            c.spread,
            len(c.values),
            " ".join(f"{k}={fmt(v)}" for k, v in c.trial.params.items()),
        )
        for c in result.candidates
    ]
    table(
        f"candidates of {result.study_name} (validation {result.metric})",
        ("trial", "mean", "std", "runs", "params"),
        candidates,
    )
    reads = result.record.test_reads
    promoted = result.record
    averaged = ""
    if promoted.members > 1 and promoted.member_trials:  # not retrained: other trials' models
        averaged = f", trials {', '.join(map(str, promoted.member_trials))} averaged"
    elif promoted.members > 1:
        averaged = f", {promoted.members} seeds averaged"
    averaged += ", with mirrored images" if promoted.mirrored else ""
    averaged += "" if promoted.retrained else ", not retrained"
    table(
        f"champion: trial {result.champion.trial.number}{averaged}, test split "
        f"(read {reads} time(s))",
        ("", ""),
        result.test.items(),
        show_header=False,
    )
    if result.record.per_class_f1:
        f1 = [(name, f"{value:.4f}") for name, value in result.record.per_class_f1.items()]
        table("test F1 per class", ("class", "F1"), f1)
    state = "already promoted, test split not read again" if result.reused else "registered"
    r = result.record
    console.print(
        f"{r.model_name} version {r.model_version} @champion ({state}); MLflow run {r.run_id}"
    )


def pipeline(result: PipelineResult) -> None:
    rows = []
    for row in result.rows:
        validation = "-" if row.validation is None else f"{row.metric} {row.validation:.5g}"
        tests = [f"{k} {v:.4g}" for k, v in row.test.items() if not k.startswith("test_accuracy_")]
        wall = "skipped (done before)" if row.skipped else f"{row.wall_s:.0f} s"
        champion = "-" if row.champion is None else f"trial {row.champion}"
        rows.append((row.stage, row.study, champion, validation, ", ".join(tests) or "-", wall))
    for name, value in result.baselines.items():
        rows.append(
            (
                "baseline",
                name.removeprefix("test_accuracy_"),
                "-",
                "-",
                f"test_accuracy {value:.4g}",
                "-",
            )
        )
    title = f"pipeline: {result.wall_s / 60:.1f} min of a {result.budget_s / 60:.1f} min budget"
    table(title, ("stage", "study", "champion", "validation", "test", "wall"), rows)
    if result.report:
        console.print(f"report: {shown(result.report)}")


def status(rows: list[dict[str, Any]]) -> None:
    columns = (
        *("study", "stage", "dataset", "metric", *STATE_COLUMNS, "best", "running_trials"),
        *("stop_reason", "options"),  # why it stopped; warm start, trial time-out, target
    )
    cells = [[row[c] if row[c] is not None else "-" for c in columns] for row in rows]
    table("studies", [c.replace("_", " ") for c in columns], cells)


def doctor(findings: list[Finding]) -> None:
    table(
        "vae-tune doctor",
        ("check", "state", "detail"),
        [(f.check, f.state, f.detail) for f in findings],
    )


def datasets(rows: list[DatasetInfo]) -> None:
    table(
        "datasets (read from --data-dir or $VAE_TUNE_DATA; train.augment: auto picks)",
        ("dataset", "classes", "augment auto", "about"),
        [(r.name, r.classes, r.augment, r.about) for r in rows],
    )


def submitted(done: Submitted, tasks: int, dry_run: bool) -> None:
    rows = []
    for job, script, job_id in done.jobs:
        shape = f"{tasks} tasks" if job.array and tasks > 1 else "1 task"
        after = f"after {job.after}" if job.after else ""
        rows.append((job_id, job.name, shape, after, str(script.relative_to(done.folder.parent))))
    table(
        "submitted to SLURM" if not dry_run else "written, not submitted (--dry-run)",
        ("job", "name", "tasks", "runs", "batch script"),
        rows,
    )


def trials(name: str, chosen: pd.DataFrame, total: int) -> None:
    fixed = ("number", "state", "value", "best_epoch", "pruned_at_epoch", "duration_s")
    columns = [c for c in fixed if c in chosen]
    columns += [str(c) for c in chosen if str(c).startswith("params_")] + ["mlflow_run_id"]
    # `params_train.lr` -> `lr`: narrow enough for a terminal.
    headers = [c.rpartition(".")[2].removeprefix("params_") for c in columns]
    rows = [[_cell(c, row.get(c)) for c in columns] for _, row in chosen.iterrows()]
    table(f"{name}: {len(chosen)} of {total} trials", headers, rows)


def curve(result: Curve) -> None:
    rows = [
        (
            str(r["size"]),
            str(r["latent_dim"] or "-"),
            f"{r['train_error']:.4f}",
            f"{r['test_error']:.4f}",
        )
        for r in result.rows
    ]
    table(
        f"learning curve of {result.study_name}, trial {result.trial} ({result.evaluation}); "
        "test split read once per size",
        ("training images", "latent dim", "train error", "test error"),
        rows,
    )
    console.print(f"MLflow run {result.run_id}")


def _cell(column: str, value: object) -> str:
    """A short cell: 4 significant digits, run ids cut to 8 characters (as MLflow shows them)."""
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return "-"
    if column == "mlflow_run_id":
        return str(value)[:8]
    if column == "state":
        return str(value).lower()
    return f"{value:.4g}" if isinstance(value, float) else str(value)
