"""`vae-tune doctor`: check the stores and repair what can be repaired without losing anything.

Checks: both stores open at the schema this version expects, trials whose worker died (zombies),
finished trials whose MLflow run is still RUNNING, interrupted trials not yet retried, study runs
left RUNNING by a killed process, and artifact folders of runs the tracking store no longer has.
With `fix`, the same repairs a study start makes (see `studies/repair.py`), plus closing stale study
runs and removing orphaned artifact folders: those of runs the tracking store says it does not have
(nothing can read them), each named before it is deleted. Only folders provably this store's are
deleted: under its own experiments' locations, and referenced by no other MLflow store beside it. A
store that cannot answer deletes nothing.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sqlite3
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import TrialState

from vae_tune.project.folder import SQLITE
from vae_tune.record import StudyRecord
from vae_tune.studies.repair import open_runs, repair, to_retry, zombie_trials
from vae_tune.tracking.tracker import Tracker

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
    """Artifact folders of runs this store positively says it does not have, under its own
    experiments' locations. A folder is deleted only when it is provably this store's: no
    other MLflow store beside it (another SQLite database in the same folder, which an older
    vae-tune gave the same `mlartifacts/STUDY` folder for a study of the same name) has its
    run or shares its experiment's folder. A store that cannot answer for a run, or a
    neighbour that cannot be read, keeps the folder: an error is never a reason to delete."""
    locations = [f for loc in tracker.artifact_locations() if (f := _local_folder(loc))]
    neighbours = _neighbour_stores(tracker.tracking_uri, locations)
    orphans: list[Path] = []
    unknown, foreign = 0, 0
    shared: dict[str, list[Path]] = {}
    for folder in locations:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if not (path.is_dir() and RUN_ID.match(path.name)):
                continue
            try:
                gone = tracker.run_status(path.name) is None
            except Exception:  # any backend's error: the run may well exist
                unknown += 1
                continue
            if not gone:
                continue
            kind, store = neighbours.owner_of(path)
            if kind == "unreadable":
                unknown += 1
            elif kind == "run":
                foreign += 1  # another store's run, in a folder an older version shared
            elif kind == "folder":
                shared.setdefault(store, []).append(path)
            else:
                orphans.append(path)
    kept = ""
    if unknown:
        kept += f"; {unknown} kept: the store could not say whether their runs exist"
        if neighbours.unreadable:
            kept += f" (a store beside it could not be read: {', '.join(neighbours.unreadable)})"
    for store, paths in sorted(shared.items()):
        kept += (
            f"; {len(paths)} without a run kept: their folder is shared with {store}, so they "
            f"cannot be proven this store's (remove by hand if neither needs them: "
            f"{_shown(paths)})"
        )
    if foreign:
        kept += f"; {foreign} of runs of another store beside this one, kept"
    unsure = bool(unknown or shared)
    if not orphans:
        state = "problem" if unsure else "ok"
        detail = f"nothing removable{kept}" if kept else "every folder belongs to a run"
        return Finding("artifact folders", state, detail)
    if fix:
        for path in orphans:
            log(f"removing {path}: the tracking store has no run {path.name}")
        for path in orphans:
            shutil.rmtree(path)
        state = "problem" if unsure else "fixed"
        return Finding("artifact folders", state, f"removed {len(orphans)} orphaned{kept}")
    return Finding(
        "artifact folders", "problem", f"{len(orphans)} without a run: {_shown(orphans)}{kept}"
    )


def _shown(paths: list[Path]) -> str:
    return ", ".join(str(p) for p in paths[:3]) + (" ..." if len(paths) > 3 else "")


@dataclass
class _Neighbours:
    """What the other MLflow SQLite stores near this one reference: run ids and folders."""

    run_ids: dict[str, str] = field(default_factory=dict)  # run id -> store file
    folders: list[tuple[Path, str]] = field(default_factory=list)  # experiment or run folder
    unreadable: list[str] = field(default_factory=list)

    def owner_of(self, path: Path) -> tuple[str, str]:
        """("run", store) if another store has this run; ("folder", store) if it keeps an
        experiment or a run in, above or below this folder; ("unreadable", "") if a store
        beside it could not be read; ("", "") when provably no neighbour's."""
        if path.name in self.run_ids:
            return "run", self.run_ids[path.name]
        if self.unreadable:
            return "unreadable", ""
        path = path.resolve()
        for folder, store in self.folders:
            if folder == path or folder.is_relative_to(path) or path.is_relative_to(folder):
                return "folder", store
        return "", ""


def _neighbour_stores(tracking_uri: str, locations: list[Path]) -> _Neighbours:
    """The other SQLite MLflow stores where one could share a folder with this store: beside
    its database, and beside each artifact root its experiments use (`ROOT/STUDY`). Read
    directly and read-only: opening them with MLflow could migrate their schema."""
    own: Path | None = None
    places: set[Path] = set()
    if tracking_uri.startswith(SQLITE):
        own = Path(tracking_uri.removeprefix(SQLITE)).resolve()
        places.add(own.parent)
    for folder in locations:
        places.update((folder.resolve().parent, folder.resolve().parent.parent))
    found = _Neighbours()
    for place in sorted(places):
        try:
            files = sorted(p for p in place.iterdir() if p.is_file())
        except OSError:
            continue
        for database in files:
            if database.resolve() != own and _is_sqlite(database):
                _read_store(database, found)
    return found


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            return file.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _read_store(database: Path, into: _Neighbours) -> None:
    """Add an MLflow store's run ids and folders; a database of another kind (an Optuna
    study) adds nothing; one that cannot be read is named."""
    name = database.name
    try:
        with contextlib.closing(
            sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        ) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
            if not {"runs", "experiments"} <= tables:
                return
            runs = connection.execute("SELECT run_uuid, artifact_uri FROM runs").fetchall()
            experiments = connection.execute("SELECT artifact_location FROM experiments")
            locations = [row[0] for row in experiments.fetchall()]
    except sqlite3.Error:
        into.unreadable.append(name)
        return
    for run_id, uri in runs:
        into.run_ids[run_id] = name
        if uri and (folder := _local_folder(uri, database.parent)):
            into.folders.append((folder.parent if folder.name == "artifacts" else folder, name))
    for location in locations:
        if location and (folder := _local_folder(location, database.parent)):
            into.folders.append((folder, name))


def _local_folder(location: str, base: Path | None = None) -> Path | None:
    """A local artifact location as a path (a relative one against `base`); None for a
    remote one (a server's `mlflow-artifacts:`, s3, ...)."""
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme == "file":
        path = Path(urllib.request.url2pathname(parsed.path))
    elif not parsed.scheme:
        path = Path(location)
    else:
        return None
    return (base / path).resolve() if base is not None and not path.is_absolute() else path
