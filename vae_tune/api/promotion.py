"""`promote`, `curve` and `load_champion`: a study's champion chosen on validation data,
tested once and registered; its learning curve; and the registered champion as a module.

`load_champion` reads a registered version only through vae-tune's safe loading
(`Tracker.load_model`): its own spec and state_dict, never a pickle unless `allow_pickle`.
"""

import os
from collections.abc import Sequence

import torch

from vae_tune.analysis.curve import Curve
from vae_tune.api._common import (
    DEFAULT_DATASET,
    Log,
    ProjectLike,
    dataset_name,
    log_of,
    open_project,
    optional_path,
)
from vae_tune.errors import VaeTuneError
from vae_tune.logs import quiet_libraries
from vae_tune.promotion.promote import Promotion
from vae_tune.record import StudyRecord
from vae_tune.space.stages import stage as stage_of
from vae_tune.tracking.registry import UntrustedModelError
from vae_tune.usecases import runner
from vae_tune.usecases.runner import StudyRef

CURVE_SIZES = (20_000, 30_000, 40_000, 50_000, 60_000)


def promote(
    stage: str,
    *,
    study_name: str | None = None,
    encoder: str = "ae",
    top_k: int = 3,
    seeds: int = 0,
    force: bool = False,
    pick: str = "knee",
    iwae_k: int = 100,
    members: int = 1,
    mirror: bool | None = None,
    retrain: bool = True,
    dataset: str = DEFAULT_DATASET,
    data_dir: str | os.PathLike[str] | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    device: str = "auto",
    allow_pickle: bool = False,
    project: ProjectLike = None,
    log: Log | None = None,
) -> Promotion:
    """Choose the champion on validation data, retrain it, evaluate it once on the test split,
    register it in MLflow with the alias ``champion``, and write the dataset's report.

    Args:
        stage: the study's stage: ``ae``, ``vae``, ``mlp`` or ``cnn``.
        study_name: default ``STAGE-DATASET`` (``mlp-ENCODER-DATASET`` for a head).
        encoder: a head study's encoder stage (``ae`` or ``vae``).
        top_k: complete trials considered.
        seeds: extra training runs per candidate, other seeds.
        force: evaluate on the test split again an already promoted trial.
        pick: a multi-objective study: ``knee`` or the best of one objective.
        iwae_k: a VAE: importance samples per test image for ``test_nll_iwae``.
        members: a classifier: retrain with this many seeds and register their average.
        mirror: a classifier: average each test image with its mirror (None: as trained).
        retrain: False promotes the champion trial's own model, trained on the training split
            and kept when the trial ended, instead of retraining it on train + validation; a
            classifier's ``members`` are then the next-best trials' own models, each taken
            where it raises the average's validation accuracy.
        dataset, data_dir, storage, tracking_uri, device, allow_pickle, project: as ``study``.
        log: called with each line of progress; None prints nothing.

    Returns:
        A ``Promotion``: the candidates, the champion, its test metrics and registered version.
    """
    _least(top_k=top_k, iwae_k=iwae_k, members=members)
    if seeds < 0:
        raise VaeTuneError(f"seeds={seeds!r}: must be 0 or more")
    quiet_libraries()
    ref = _ref(stage, study_name, dataset, encoder, data_dir, allow_pickle)
    found = open_project(project, storage=storage, tracking_uri=tracking_uri, device=device)
    return runner.promote(
        ref,
        found,
        log_of(log),
        top_k=top_k,
        seeds=seeds,
        force=force,
        pick=pick,
        iwae_k=iwae_k,
        members=members,
        mirror=mirror,
        retrain=retrain,
    )


def curve(
    stage: str,
    *,
    sizes: Sequence[int] = CURVE_SIZES,
    study_name: str | None = None,
    encoder: str = "ae",
    dataset: str = DEFAULT_DATASET,
    data_dir: str | os.PathLike[str] | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    device: str = "auto",
    allow_pickle: bool = False,
    project: ProjectLike = None,
    log: Log | None = None,
) -> Curve:
    """Learning curve: the promoted configuration retrained on growing training sets
    (``sizes``), each tested once. The other options are ``promote``'s."""
    if not sizes or any(size < 1 for size in sizes):
        raise VaeTuneError(f"sizes={tuple(sizes)!r}: give training-set sizes of 1 or more")
    quiet_libraries()
    ref = _ref(stage, study_name, dataset, encoder, data_dir, allow_pickle)
    found = open_project(project, storage=storage, tracking_uri=tracking_uri, device=device)
    return runner.curve(ref, tuple(sizes), found, log_of(log))


def load_champion(
    stage: str,
    *,
    dataset: str = DEFAULT_DATASET,
    encoder: str = "ae",
    study_name: str | None = None,
    version: int | str | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    allow_pickle: bool = False,
    project: ProjectLike = None,
) -> torch.nn.Module:
    """The champion a study registered, as vae-tune's torch module, on the CPU, in eval mode:
    an autoencoder's ``model(images)`` reconstructs them and ``model.encode(images)`` gives
    the latents; a classifier's gives class logits.

    Args:
        stage: ``ae``, ``vae``, ``mlp`` or ``cnn``.
        dataset, encoder, study_name: which study's champion (as ``promote``).
        version: a registered version that study promoted (default: the alias ``champion``).
        storage, tracking_uri, project: as ``study``.
        allow_pickle: load a version vae-tune 0.1 registered as a pickle; unpickling runs the
            code it names, so only for a registry you trust.

    Raises:
        VaeTuneError: no such study, or nothing promoted.
        UntrustedModelError: the version was not registered by the study's own promotion, or
            needs unpickling without ``allow_pickle``.
    """
    quiet_libraries()
    ref = _ref(stage, study_name, dataset, encoder, None, allow_pickle)
    found = open_project(project, storage=storage, tracking_uri=tracking_uri)
    if not found.has_storage:
        raise VaeTuneError(f"no study storage at {found.storage_location}: run a study first")
    storage_, tracker = found.open_stores()
    record = StudyRecord.load(ref.name, storage_)
    model_name = stage_of(stage).registry_name(ref.dataset)
    wanted = None if version is None else str(version)
    if wanted is None:
        champion = tracker.champion(model_name)
        if champion is None:
            raise VaeTuneError(f"{model_name} has no champion: promote {ref.name} first")
        wanted = str(champion.version)
        source = f" (alias champion, from study {champion.tags.get('study', '?')!r})"
    else:
        source = ""
    # The version must be one the study itself promoted: a tag or an alias moved by someone
    # else proves nothing, and a head of another encoder shares the model name.
    runs = [
        p.run_id
        for p in record.promotions.values()
        if p.model_name == model_name and str(p.model_version) == wanted
    ]
    if not runs:
        raise UntrustedModelError(
            f"{model_name} version {wanted}{source} is none of the versions study {ref.name!r} "
            "promoted: promote it, or name a version it promoted"
        )
    model = tracker.load_model(model_name, wanted, run_id=runs[0], allow_pickle=allow_pickle)
    return model.cpu().eval()


def _ref(
    stage: str,
    study_name: str | None,
    dataset: str,
    encoder: str,
    data_dir: str | os.PathLike[str] | None,
    allow_pickle: bool,
) -> StudyRef:
    stage_of(stage)  # an unknown stage is named before any store is opened
    if encoder not in ("ae", "vae"):
        raise VaeTuneError(f"encoder={encoder!r}: choose 'ae' or 'vae'")
    return StudyRef(
        stage, study_name, dataset_name(dataset), encoder, optional_path(data_dir), allow_pickle
    )


def _least(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise VaeTuneError(f"{name}={value!r}: must be 1 or more")
