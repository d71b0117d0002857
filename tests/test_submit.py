"""`vae-tune submit`'s batch scripts, as written before SLURM sees them (the jobs themselves run
on a real one-node cluster in test_cluster.py)."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from tests.helpers import invoke
from vae_tune.ops.cluster import Resources, Stores, batch_script, plan_jobs


def test_arrays_get_their_gpus_and_each_promotion_one(tmp_path: Path) -> None:
    resources = Resources(tasks=4, gpus_per_task=2, time="02:00:00")
    stores = Stores("postgresql://db/optuna", "http://mlflow:5000")
    study, promote = plan_jobs("study", "ae", "ae", ["--n-trials", "64"])
    array = batch_script(tmp_path, study, resources, stores)
    promotion = batch_script(tmp_path, promote, resources, stores)
    assert "#SBATCH --array=0-3" in array and "#SBATCH --gpus-per-task=2" in array
    assert "--array" not in promotion and "#SBATCH --gpus-per-task=1" in promotion
    assert "--gpus-per-task" not in batch_script(tmp_path, promote, Resources(tasks=4), stores)
    for script in (array, promotion):  # SIGTERM before the time limit: the trial closes
        assert "#SBATCH --signal=B:TERM@60" in script and "--time=02:00:00" in script
    assert "--n-trials 64" in array and "--n-trials" not in promotion


# A stand-in for SLURM's `sbatch` binary only: it records its command line and answers with a
# job id, or, from call number $SBATCH_ANSWERS + 1 on, never answers (a controller that is down).
FAKE_SBATCH = """#!/bin/sh
echo "$@" >> "$SBATCH_LOG"
n=$(wc -l < "$SBATCH_LOG")
if [ "$n" -gt "$SBATCH_ANSWERS" ]; then exec sleep 600; fi
echo "10$n;vaetune"
"""
STORES = ["--storage", "postgresql://db/optuna", "--tracking-uri", "http://mlflow:5000"]


def fake_sbatch(tmp_path: Path, answers: int = 99) -> dict[str, str]:
    """The environment of a `vae-tune submit` whose PATH finds the fake sbatch first."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(FAKE_SBATCH)
    sbatch.chmod(0o755)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SBATCH_LOG": str(tmp_path / "sbatch.log"),
        "SBATCH_ANSWERS": str(answers),
        "VAE_TUNE_SBATCH_TIMEOUT": "1",
    }


def submit(project: Path, env: dict[str, str], *args: str) -> tuple[int, str]:
    result = invoke(project, "submit", *args, *STORES, "--allow-local-stores", env=env)
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.slow
def test_submit_pipeline_writes_every_study_option_into_its_study_scripts(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = fake_sbatch(tmp_path)
    code, output = submit(
        project, env, "pipeline", "--n-trials", "9", "--train-size", "5000", "--tasks", "2"
    )
    assert code == 0, output
    scripts = {
        p.name.rsplit("-", 2)[0]: p.read_text() for p in (project / "slurm").glob("*.sbatch")
    }
    assert sorted(scripts) == ["promote-ae", "promote-mlp", "study-ae", "study-mlp"]
    for name in ("study-ae", "study-mlp"):
        assert "--n-trials 9 --train-size 5000" in scripts[name], scripts[name]
        assert "#SBATCH --array=0-1" in scripts[name]
    assert "study mlp --encoder ae --n-trials 9" in scripts["study-mlp"]
    assert "--n-trials" not in scripts["promote-ae"] + scripts["promote-mlp"]
    calls = Path(env["SBATCH_LOG"]).read_text().splitlines()
    assert len(calls) == 4 and "--dependency=afterany:101" in calls[1], calls


def test_submit_study_passes_a_short_option_and_refuses_a_misspelt_one(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    code, output = submit(project, {}, "study", "vae", "-n", "5", "--epochs", "3", "--dry-run")
    assert code == 0, output
    (script,) = (project / "slurm").glob("study-vae-*.sbatch")
    assert "study vae -n 5 --epochs 3" in script.read_text()
    extras = tmp_path / "extras"
    extras.mkdir()
    code, output = submit(
        extras,
        {},
        "study",
        "ae",
        *("--trial-timeout", "90s", "--target", "0.05", "--warm-start", "old-ae", "--dry-run"),
    )
    assert code == 0, output
    (script,) = (extras / "slurm").glob("study-ae-*.sbatch")
    assert "--trial-timeout 90s --target 0.05 --warm-start old-ae" in script.read_text()
    again = tmp_path / "again"
    again.mkdir()
    code, output = submit(again, {}, "study", "vae", "--n-trails", "5", "--dry-run")
    assert code == 2 and "Traceback" not in output
    assert "No such option: --n-trails" in output and "study-vae job would fail" in output
    assert list(again.iterdir()) == []


@pytest.mark.slow
def test_submit_study_of_an_unknown_stage_is_refused_before_sbatch_runs(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    env = fake_sbatch(tmp_path)
    code, output = submit(project, env, "study", "aee", "--n-trials", "9")
    assert code == 2 and "Traceback" not in output
    assert "submit study aee: no such stage; choose one of ae, vae, mlp, cnn" in output
    assert not Path(env["SBATCH_LOG"]).exists(), "sbatch ran"
    assert list(project.iterdir()) == []


@pytest.mark.slow
def test_an_sbatch_that_never_answers_is_a_message_and_nothing_is_left(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    code, output = submit(project, fake_sbatch(tmp_path, answers=0), "study", "ae")
    assert code == 2 and "Traceback" not in output
    assert "sbatch did not answer in 1 s (VAE_TUNE_SBATCH_TIMEOUT)" in output
    assert "`squeue --me` shows whether study-ae was queued" in output
    assert list(project.iterdir()) == []


@pytest.mark.slow
def test_an_sbatch_timeout_after_a_queued_job_names_the_queued_one(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    code, output = submit(project, fake_sbatch(tmp_path, answers=1), "study", "ae")
    assert code == 2 and "Traceback" not in output
    assert "while submitting promote-ae" in output
    assert "already queued: study-ae 101 (`scancel 101` to cancel them" in output
    # The queued job's script stays (what a user resubmits from); the other was not queued.
    assert [p.name.rsplit("-", 2)[0] for p in (project / "slurm").glob("*.sbatch")] == ["study-ae"]


def test_output_paths_with_spaces_are_one_path_as_sbatch_reads_them(tmp_path: Path) -> None:
    project = tmp_path / "my 100% project"
    job, _ = plan_jobs("study", "ae", "ae", [])
    script = batch_script(project, job, Resources(partition="gpu"), Stores("pg://", "http://m"))
    (line,) = [x for x in script.splitlines() if x.startswith("#SBATCH --output")]
    # sbatch splits an #SBATCH line's arguments with a shell's quotes and backslashes; `%%` is
    # its literal percent sign in a file name pattern.
    (argument,) = shlex.split(line.removeprefix("#SBATCH "))
    assert argument == f"--output={tmp_path}/my 100%% project/slurm/logs/%x-%A_%a.out"
