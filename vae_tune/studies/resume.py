"""Creating or resuming a study: its Optuna study (with a sampler seed of its own), the check
that it runs with the space and settings it began with, and its MLflow parent run."""

from __future__ import annotations

import contextlib
import json
import time
import warnings
from collections.abc import Callable

import optuna

from vae_tune.errors import StudyMismatchError
from vae_tune.record import Settings, StudyRecord
from vae_tune.space.extras import Extras
from vae_tune.space.samplers import make_pruner, study_sampler
from vae_tune.space.spaces import SearchSpace
from vae_tune.tracking.tracker import Tracker

Log = Callable[[str], None]
PARENT_WAIT_S = 120  # the creator of a new study opens its run within a second or two
CREATOR_GRACE_S = 10.0  # between create_study and the creator's mark: one storage write


def optuna_study(
    space: SearchSpace,
    storage: optuna.storages.BaseStorage,
    name: str,
    seed: int,
    create: bool = True,
) -> tuple[optuna.Study, bool]:
    """The study, and whether this process created it: the storage lets one process create a
    study of a name, so of several that start at once exactly one is its creator."""
    settings = space.settings
    epochs = int(space.config(space.fixed).train.epochs)
    pruner = make_pruner(settings.pruner, max_epochs=epochs)
    created = False
    if create:
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=name,
                pruner=pruner,
                directions=[optuna.study.StudyDirection[d.upper()] for d in settings.directions],
            )
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
    else:
        study = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
    # Optuna's samplers draw from one random stream per process: with one seed, every worker
    # and every machine would replay the same start-up configs. Each trial gets its own.
    study.sampler = study_sampler(settings.sampler, seed)
    return study, created


def await_creator(record: StudyRecord) -> None:
    """For a study another process has just created (processes started together: a SLURM
    array): wait until that process has recorded its creation and its space and settings, so
    they are checked against what it recorded, not against a half-written record. A study
    with neither a creator's mark nor trials after CREATOR_GRACE_S was made outside vae-tune
    (`optuna create-study`): nothing to wait for."""
    grace = time.monotonic() + CREATOR_GRACE_S
    while record.creator is None and not record.started and time.monotonic() < grace:
        if record.live.get_trials(deepcopy=False):
            return
        time.sleep(0.2)
        record.refreshed()
    deadline = time.monotonic() + PARENT_WAIT_S
    while record.creator is not None and not record.fully_started:
        if time.monotonic() > deadline:
            return  # its creator died before recording it: this process records it instead
        time.sleep(0.2)
        record.refreshed()


def check_resume(
    record: StudyRecord, space: SearchSpace, settings: Settings, force: bool, log: Log = print
) -> None:
    """A study resumes with what it began with: its space, settings and objectives. `force`
    continues with the new ones (and says so), except directions, which Optuna keeps."""
    if record.started:
        changes = _changes(record, space, settings)
        _check_directions(record, space)
        if changes and not force:
            raise StudyMismatchError(
                f"study {record.study.study_name!r} was started with {'; '.join(changes)}. "
                "Use the same options, another --study-name, or --force to continue with the "
                "new ones."
            )
        for change in changes:
            log(f"study {record.study.study_name}: continuing with {change} changed (--force)")
    record.record_start(space, settings)
    with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in practice
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        record.live.set_metric_names(list(space.settings.metrics))


def _changes(record: StudyRecord, space: SearchSpace, settings: Settings) -> list[str]:
    """What differs from what the study began with, each said as the user would check it."""
    changes = []
    if record.space_text != space.text:
        changes.append(
            f"another search space (stored on the study as user attribute 'search_space'; "
            f"now {space.source})"
        )
    stored, current = record.stored_settings, settings.to_json()
    changed = sorted(k for k in current if stored.get(k) != current[k])
    if changed:
        shown = {k: stored.get(k) for k in changed}
        changes.append(f"other settings: {shown}, now { ({k: current[k] for k in changed}) }")
    if record.metrics != list(space.settings.metrics):
        changes.append(
            f"another objective: {', '.join(record.metrics)}, now "
            f"{', '.join(space.settings.metrics)} (--objective or the space's study.objective)"
        )
    return changes


def _check_directions(record: StudyRecord, space: SearchSpace) -> None:
    stored = [d.name.lower() for d in record.live.directions]
    wanted = list(space.settings.directions)
    if stored != wanted:
        raise StudyMismatchError(
            f"study {record.study.study_name!r} {'/'.join(stored)}s "
            f"{', '.join(record.metrics)}; {', '.join(space.settings.metrics)} would "
            f"{'/'.join(wanted)}. Optuna keeps a study's directions, even with --force: use "
            "another --study-name."
        )


def parent_run(
    record: StudyRecord,
    tracker: Tracker,
    experiment_id: str,
    space: SearchSpace,
    settings: Settings,
    creator: bool = True,
) -> str:
    """The study's MLflow run: the one stored on the study if it still exists, else a new one.
    A process that is not `creator` of a study being created waits for the creator's run
    rather than make a second one (processes started together on a new study)."""
    run_id = record.parent_run_id
    deadline = time.monotonic() + PARENT_WAIT_S
    while not creator and not run_id and time.monotonic() < deadline:
        time.sleep(0.2)
        run_id = record.refreshed().parent_run_id
    if run_id and tracker.run_exists(run_id):
        tracker.resume_run(run_id)
        return run_id
    name = record.study.study_name
    params = {f"fixed.{k}": v for k, v in space.fixed.items()}
    params |= {k: v for k, v in settings.to_json().items() if k not in ("fixed", "encoder")}
    params |= {
        "study.metric": space.settings.metric,
        "study.direction": ",".join(space.settings.directions),
        "study.objectives": ",".join(space.settings.metrics),
        "study.sampler": json.dumps(dict(space.settings.sampler)),
        "study.pruner": json.dumps(dict(space.settings.pruner)),
    }
    tags = {"optuna.study_name": name, "vae_tune.role": "study", **settings.encoder}
    run_id = tracker.start_run(experiment_id, name, params=params, tags=tags)
    tracker.log_text(run_id, space.text, "search_space.yaml")
    record.record_mlflow(experiment_id, run_id, tracker.tracking_uri)
    return run_id


def record_extras(
    record: StudyRecord, tracker: Tracker, parent_run_id: str, extras: Extras
) -> dict[str, str]:
    """This session's warm start, trial time-out and target, on the study (`vae-tune status`)
    and its parent run; those it leaves out are removed from the run. As shown."""
    shown = extras.shown()
    record.record_options(shown)
    keys = ("warm_start", "trial_timeout", "target")
    tracker.set_tags(parent_run_id, {f"vae_tune.{k}": shown[k] for k in keys if k in shown})
    for key in keys:
        if key not in shown:
            with contextlib.suppress(Exception):  # MLflow raises for a tag that is not there
                tracker.delete_tag(parent_run_id, f"vae_tune.{key}")
    return shown
