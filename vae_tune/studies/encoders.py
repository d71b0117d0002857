"""The encoder a head study builds on.

The promoted champion of the encoder study (the model registry's alias `champion`) when there is
one; otherwise the study's best trial, replayed through the same code path as in its study and
retrained with the trial's seed and schedule up to the epoch it was selected at. A retrained
encoder is cached under `studies/encoders/`, so resuming a head study does not retrain it.
Either way the lineage (study, trial, run, model version) comes back with it.

A registered encoder is taken only when vae-tune's own record vouches for it: the champion's
version and run are a promotion recorded on the encoder study (tags prove nothing: anyone who
can register a model can set them), and a head study's stored lineage names the run its
version must still come from. Nothing is unpickled unless the user passes --allow-pickle.
A registered user's model whose class cannot be used here comes as its exported graph: a frozen
head trains on it, a fine-tuned one is refused before any trial.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch

from vae_tune.errors import VaeTuneError
from vae_tune.evaluation.tasks import AutoencoderTask, Lineage, retrain
from vae_tune.models.config import HeadConfig
from vae_tune.models.graph import GraphEncoder, GraphOnlyError
from vae_tune.models.nets import Autoencoder
from vae_tune.models.saving import load_spec_file, save_spec_file
from vae_tune.record import StudyRecord, TrialRecord
from vae_tune.space.spaces import SearchSpace
from vae_tune.space.stages import stage
from vae_tune.tracking.registry import UntrustedModelError
from vae_tune.tracking.tracker import Tracker

Log = Callable[[str], None]
Encoder = Autoencoder | GraphEncoder  # a graph: the registered one, where its class is not here


def resolve_encoder(
    study_name: str,
    storage: optuna.storages.BaseStorage,
    tracker: Tracker,
    cache_dir: Path,
    *,
    split: dict[str, Any],
    data_dir: Path | None,
    device: torch.device,
    log: Log = print,
    allow_pickle: bool = False,
) -> tuple[Encoder, Lineage]:
    """The encoder of `study_name`: its registered champion, else its best trial retrained.

    `split` ({dataset, val_size, seed}) is the head study's: it must be the encoder's too, or
    the encoder would have been trained on the head's validation images. `allow_pickle`: the
    user's --allow-pickle (a champion registered by vae-tune 0.1 is a pickle).
    """
    record = StudyRecord.load(study_name, storage)
    settings = record.settings
    if settings.split != split:
        raise VaeTuneError(
            f"encoder study {study_name!r} used another data split ({settings.split}, here "
            f"{split}): its training images would overlap this study's validation images. "
            "Use the same --dataset, --val-size and --seed."
        )
    model_name = stage(settings.stage).registry_name(settings.dataset)
    champion = tracker.champion(model_name)
    promoted = champion is not None and any(
        p.run_id == champion.run_id
        and p.model_name == model_name
        and str(p.model_version) == str(champion.version)
        for p in record.promotions.values()
    )
    if champion is not None and not promoted and champion.tags.get("study") == study_name:
        runs = sorted(p.run_id for p in record.promotions.values()) or "none"
        raise UntrustedModelError(
            f"{model_name} version {champion.version} (alias champion) says it comes from study "
            f"{study_name!r}, but its run {champion.run_id} is none of that study's promotion "
            f"runs ({runs}): vae-tune did not register it, and tags alone prove nothing. "
            f"Refused (--allow-pickle does not change this); run `vae-tune promote "
            f"{settings.stage}` to register the study's own champion, or point the alias back "
            "at a version it promoted."
        )
    if champion is not None and promoted:
        log(f"encoder: {model_name} version {champion.version} (alias champion)")
        lineage = {
            "encoder.source": "registry",
            "encoder.model": model_name,
            "encoder.version": str(champion.version),
            "encoder.study": study_name,
            "encoder.trial": champion.tags.get("trial", ""),
            "encoder.run_id": str(champion.run_id),
            "encoder.stage": settings.stage,
        }
        model = _registered(
            tracker, model_name, str(champion.version), str(champion.run_id), allow_pickle, log
        )
        return model.to(device), lineage
    if os.environ.get("SLURM_JOB_ID"):  # every task would retrain its own, and each differently
        raise VaeTuneError(
            f"on a cluster the head study takes its encoder from the registry, and "
            f"{model_name} has no champion of {study_name!r}: run `vae-tune promote "
            f"{settings.stage}` first (`vae-tune submit pipeline` does)"
        )
    return best_trial_encoder(record, cache_dir, data_dir=data_dir, device=device, log=log)


def encoder_from_lineage(
    lineage: Lineage,
    storage: optuna.storages.BaseStorage,
    tracker: Tracker,
    cache_dir: Path,
    *,
    data_dir: Path | None,
    device: torch.device,
    log: Log = print,
    allow_pickle: bool = False,
) -> Encoder:
    """The very encoder a head study was run on, from the lineage stored on that study: a
    registered version only if it still comes from the run the lineage recorded."""
    if lineage["encoder.source"] == "registry":
        name, version = lineage["encoder.model"], lineage["encoder.version"]
        log(f"encoder: {name} version {version}")
        model = _registered(tracker, name, version, lineage["encoder.run_id"], allow_pickle, log)
        return model.to(device)
    record = StudyRecord.load(lineage["encoder.study"], storage)
    model, current = best_trial_encoder(
        record, cache_dir, data_dir=data_dir, device=device, log=log
    )
    if current["encoder.trial"] != lineage["encoder.trial"]:
        raise VaeTuneError(
            f"the head study used trial {lineage['encoder.trial']} of {lineage['encoder.study']}"
            f" as its encoder, but that study's best trial is now {current['encoder.trial']}: "
            "run the head study again (with --force) on the new encoder"
        )
    return model


def refuse_fine_tuning(space: SearchSpace, encoder: Encoder) -> None:
    """An encoder that is here only as its graph cannot be fine-tuned: a space whose trials
    may fine-tune it is refused before any of them trains."""
    searched = next((p.choices for p in space.params if p.name == "head.mode"), None)
    modes = searched or (space.fixed.get("head.mode", HeadConfig.mode),)
    if isinstance(encoder, GraphEncoder) and "finetune" in modes:
        what = f"{space.source} fine-tunes the encoder (head.mode: finetune)"
        raise GraphOnlyError(encoder.why_frozen(what))


def _registered(
    tracker: Tracker, name: str, version: str, run_id: str, allow_pickle: bool, log: Log
) -> Encoder:
    """A registered encoder; its exported graph, said so, where its class cannot be used."""
    model = tracker.load_encoder(name, version, run_id=run_id, allow_pickle=allow_pickle)
    if isinstance(model, GraphEncoder):
        log(
            f"encoder: {name} version {version} as its exported graph, frozen "
            f"({model.origin['why']})"
        )
    return model


def best_trial_encoder(
    record: StudyRecord,
    cache_dir: Path,
    *,
    data_dir: Path | None,
    device: torch.device,
    log: Log = print,
) -> tuple[Autoencoder, Lineage]:
    """The retrained best trial of the study and its lineage (study, trial, MLflow run)."""
    study = record.live
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise VaeTuneError(
            f"study {study.study_name!r} has no complete trial to take an encoder from"
        )
    if len(study.directions) > 1:
        raise VaeTuneError(
            f"study {study.study_name!r} has several objectives: promote it first (`vae-tune "
            "promote STAGE --pick knee|elbo|probe`), and the head study takes its champion"
        )
    trial = study.best_trial
    facts = TrialRecord(trial)
    settings = record.settings
    lineage = {
        "encoder.source": "best trial, retrained",
        "encoder.study": study.study_name,
        "encoder.trial": str(trial.number),
        "encoder.run_id": str(facts.run_id),
        "encoder.stage": settings.stage,
    }
    config = record.replay(trial)
    # The key covers everything the weights depend on: a recreated study reuses no stale file.
    # "schedule": the trial's own schedule to its best epoch (0.3), not one squeezed to fit.
    recipe = [config.model, config.train, trial.user_attrs, settings.to_json(), "schedule"]
    digest = hashlib.sha1(json.dumps(recipe, default=str).encode()).hexdigest()[:12]
    cache = cache_dir / f"{study.study_name}-trial{trial.number}-{digest}.pt"
    if cache.is_file():
        model = load_spec_file(cache)
        assert isinstance(model, Autoencoder), f"{cache} holds an autoencoder"
        log(f"encoder: trial {trial.number} of {study.study_name} (cached in {cache})")
        return model.to(device), lineage

    epochs = facts.best_epoch
    log(f"encoder: retraining trial {trial.number} of {study.study_name} to its epoch {epochs}")
    task = AutoencoderTask(settings.stage, record.splits(data_dir, device))
    trained, _ = retrain(task, config, facts.seed, epochs, validate=True)
    assert isinstance(trained, Autoencoder)
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_spec_file(trained, cache, "vae-tune/encoder-cache")
    return trained, lineage
