"""`vae-tune doctor`: check the stores and repair what can be repaired without losing anything.

Checks: both stores open at the schema this version expects, trials whose worker died (zombies),
finished trials whose MLflow run is still RUNNING, interrupted trials not yet retried, study runs
left RUNNING by a killed process, and artifact folders of runs the tracking store no longer has.
With `fix`, the same repairs a study start makes (see `repair.py`), plus closing stale study runs
and removing orphaned artifact folders: those of runs the tracking store says it does not have
(nothing can read them), each named before it is deleted. A store that cannot answer deletes
nothing.
"""

from __future__ import annotations

import re
import shutil
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import TrialState

from vae_tune.ops.repair import open_runs, repair, to_retry, zombie_trials
from vae_tune.record import StudyRecord
from vae_tune.tracking import Tracker

RUN_ID = re.compile(r"^[0-9a-f]{32}$")
Log = Callable[[str], None]


@dataclass(frozen=True)
class Finding:
    check: str
    state: str  # "ok", "problem" or "fixed"
    detail: str


def diagnose(
    storage: BaseStorage, tracker: Tracker, fix: bool = False, log: Log = print
) -> list[Finding]:
    findings = [_storage_schema(storage), Finding("MLflow store", "ok", tracker.tracking_uri)]
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        findings += _study_findings(study, tracker, fix)
    findings.append(_orphaned_artifacts(tracker, fix, log))
    return findings


def _storage_schema(storage: BaseStorage) -> Finding:
    if isinstance(storage, RDBStorage):
        current, head = storage.get_current_version(), storage.get_head_version()
        if current != head:  # Optuna refuses to open an older schema, so this is rare
            return Finding(
                "Optuna storage",
                "problem",
                f"schema {current}, this Optuna expects "
                f"{head}: run `optuna storage upgrade --storage URL`",
            )
        return Finding("Optuna storage", "ok", f"RDB, schema {current}")
    return Finding("Optuna storage", "ok", f"{type(storage).__name__}, readable")


def _study_findings(study: optuna.Study, tracker: Tracker, fix: bool) -> list[Finding]:
    name = study.study_name
    zombies = [t.number for t in zombie_trials(study)]
    unclosed = [run_id for run_id, _ in open_runs(study, tracker)]
    unretried = [t.number for t in to_retry(study)]
    stale_parent = _stale_parent_run(study, tracker, set(zombies))  # before the repair
    problems = {
        "zombie trials (worker died)": zombies,
        "runs left RUNNING by finished trials": unclosed,
        "interrupted trials not retried": unretried,
    }
    if fix and (zombies or unclosed or unretried):
        repair(study, tracker)
    if fix and stale_parent:
        tracker.end_run(stale_parent, "KILLED", {"vae_tune.interrupted": "true"})
    state = "fixed" if fix else "problem"
    findings = [
        Finding(f"{name}: {check}", state if trials else "ok", str(trials) if trials else "none")
        for check, trials in problems.items()
    ]
    detail = f"{stale_parent} RUNNING, no trial running" if stale_parent else "closed or in use"
    findings.append(Finding(f"{name}: study run", state if stale_parent else "ok", detail))
    return findings


def _stale_parent_run(study: optuna.Study, tracker: Tracker, zombies: set[int]) -> str | None:
    """The study's MLflow run, if RUNNING while no live worker runs a trial of it."""
    run_id = StudyRecord(study).parent_run_id
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    alive = [t for t in running if t.number not in zombies]
    if run_id and not alive and tracker.run_status(run_id) == "RUNNING":
        return run_id
    return None


def _orphaned_artifacts(tracker: Tracker, fix: bool, log: Log) -> Finding:
    """Artifact folders of runs the store positively says it does not have. A store that
    cannot answer for a run keeps that run's folder: an error is never a reason to delete."""
    orphans: list[Path] = []
    unknown = 0
    for location in tracker.artifact_locations():
        folder = _local_folder(location)
        if folder is None or not folder.is_dir():
            continue
        for path in folder.iterdir():
            if not (path.is_dir() and RUN_ID.match(path.name)):
                continue
            try:
                gone = tracker.run_status(path.name) is None
            except Exception:  # any backend's error: the run may well exist
                unknown += 1
                continue
            if gone:
                orphans.append(path)
    kept = f"; {unknown} kept: the store could not say whether their runs exist" if unknown else ""
    if not orphans:
        state = "problem" if unknown else "ok"
        return Finding("artifact folders", state, f"every folder belongs to a run{kept}")
    if fix:
        for path in orphans:
            log(f"removing {path}: the tracking store has no run {path.name}")
        for path in orphans:
            shutil.rmtree(path)
        return Finding("artifact folders", "fixed", f"removed {len(orphans)} orphaned{kept}")
    shown = ", ".join(str(p) for p in orphans[:3]) + (" ..." if len(orphans) > 3 else "")
    return Finding("artifact folders", "problem", f"{len(orphans)} without a run: {shown}{kept}")


def _local_folder(location: str) -> Path | None:
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if not parsed.scheme:
        return Path(location)
    return None
