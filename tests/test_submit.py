"""`vae-tune submit`'s batch scripts, as written before SLURM sees them (the jobs themselves run
on a real one-node cluster in test_cluster.py)."""

from __future__ import annotations

from pathlib import Path

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
