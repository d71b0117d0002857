"""The examples run as a user runs them: the notebook executed cell by cell in a real Jupyter
kernel (nbclient), in a fresh project folder, on the real data."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import REPO, chdir, data_dir

pytestmark = pytest.mark.slow  # a real study and promotion


def test_the_quickstart_notebook_runs_a_study_promotes_and_uses_the_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = nbformat.read(REPO / "examples" / "quickstart.ipynb", as_version=4)
    monkeypatch.setenv("VAE_TUNE_DATA", str(data_dir()))  # the kernel inherits it
    with chdir(tmp_path):
        NotebookClient(
            notebook, timeout=600, resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    outputs = [
        "".join(
            o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.outputs
        )
        for cell in notebook.cells
        if cell.cell_type == "code"
    ]
    assert "MLflow parent run" in outputs[1] and "COMPLETE" in outputs[1]
    assert "test {'test_loss'" in outputs[2]
    assert "latents (10, " in outputs[3] and "reconstruction MSE" in outputs[3]
    assert (tmp_path / "mlflow.db").is_file() and (
        tmp_path / "studies" / "optuna.journal"
    ).is_file()
