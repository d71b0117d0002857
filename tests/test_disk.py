"""A full or read-only `studies/` folder: one clear message, and the stores stay usable.

`studies/` is a real small filesystem (tmpfs) mounted for the test, which needs root.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

from tests.helpers import FINISHED, env, load_study, runs_of, start, study_command

pytestmark = pytest.mark.slow  # real studies on real data, subprocesses, servers


@contextlib.contextmanager
def small_filesystem(folder: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root (CI runs as root)")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path) -> Path:
    ballast = folder / "ballast"
    with ballast.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    return ballast


def test_disk_full_mid_study_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    command = study_command("--n-trials", "5")
    with small_filesystem(tmp_path / "studies", "4m") as studies:
        process = start(command, tmp_path)
        output = []
        for line in process.stdout:
            output.append(line)
            if line.startswith("trial 1 "):  # two trials recorded, then the disk fills up
                ballast = fill(studies)
                break
        output.append(process.stdout.read())
        text = "".join(output)
        assert process.wait(timeout=120) == 1, text
        assert "No space left on device" in text and "run the same command" in text
        assert "Traceback" not in text
        recorded = load_study(tmp_path).get_trials()  # the journal still reads
        assert sum(t.state in FINISHED for t in recorded) >= 2

        ballast.unlink()
        rerun = subprocess.run(
            command, cwd=tmp_path, env=env(), text=True, capture_output=True, timeout=300
        )
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        trials = load_study(tmp_path).get_trials()
    assert sum(t.state in FINISHED for t in trials) == 5
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    _, [parent], children = runs_of(tmp_path)
    assert parent.info.status == "FINISHED"
    assert not [r.info.run_id for r in children if r.info.status == "RUNNING"]


def test_read_only_studies_folder_is_refused_before_any_work(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "studies", "1m") as studies:
        subprocess.run(["mount", "-o", "remount,ro", str(studies)], check=True)
        result = subprocess.run(
            study_command("--n-trials", "1"),
            cwd=tmp_path,
            env=env(),
            text=True,
            capture_output=True,
            timeout=120,
        )
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{studies} is not writable" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists(), "nothing was started"
