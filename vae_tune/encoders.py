"""The encoder an MLP-head study builds on: the best trial of an AE/VAE study, retrained.

The trial is replayed through the same code path as in its study: the space text stored on the
study is parsed again and sampled with the trial's own params (a FixedTrial), then trained with
the trial's seed for the epoch count it was selected at. The result is cached under
`studies/encoders/`, so resuming a head study does not retrain it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import optuna
import torch
from torch import nn

from vae_tune.config import build_config
from vae_tune.data import load_splits
from vae_tune.errors import VaeTuneError
from vae_tune.models import build_model
from vae_tune.space import parse_space
from vae_tune.study import Log
from vae_tune.train import fit


def best_trial_encoder(
    study_name: str,
    storage: optuna.storages.BaseStorage,
    cache_dir: Path,
    *,
    split: dict[str, object],
    data_dir: Path | None,
    device: torch.device,
    log: Log = print,
) -> tuple[nn.Module, dict[str, str]]:
    """The retrained best trial of `study_name` and its lineage (study, trial, MLflow run).

    `split` ({dataset, val_size, seed}) is the head study's: it must be the encoder's too, or
    the encoder would have been trained on the head's validation images.
    """
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise VaeTuneError(
            f"no study {study_name!r} in the storage: run `vae-tune study` for the encoder first"
        ) from None
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise VaeTuneError(f"study {study_name!r} has no complete trial to take an encoder from")
    trial = study.best_trial
    settings = study.user_attrs["settings"]
    theirs = {key: settings[key] for key in split}
    if theirs != split:
        raise VaeTuneError(
            f"encoder study {study_name!r} used another data split ({theirs}, here {split}): "
            "its training images would overlap this study's validation images. Use the same "
            "--dataset, --val-size and --seed."
        )
    lineage = {
        "encoder.source": "best trial, retrained",
        "encoder.study": study_name,
        "encoder.trial": str(trial.number),
        "encoder.run_id": str(trial.user_attrs.get("mlflow_run_id")),
        "encoder.stage": settings["stage"],
    }
    space = parse_space(study.user_attrs["search_space"], f"study {study_name}")
    space = space.with_fixed(settings["fixed"])
    config = build_config(space.sample(optuna.trial.FixedTrial(trial.params)))
    model = build_model(settings["stage"], config.model)

    # The key covers everything the weights depend on: a recreated study reuses no stale file.
    recipe = json.dumps([config.model, config.train, trial.user_attrs, settings], default=str)
    digest = hashlib.sha1(recipe.encode()).hexdigest()[:12]
    cache = cache_dir / f"{study_name}-trial{trial.number}-{digest}.pt"
    if cache.is_file():
        model.load_state_dict(torch.load(cache, map_location="cpu"))
        log(f"encoder: trial {trial.number} of {study_name} (cached in {cache})")
        return model.to(device), lineage

    epochs = trial.user_attrs["best_epoch"]
    log(f"encoder: retraining trial {trial.number} of {study_name} for {epochs} epochs")
    splits = load_splits(
        settings["dataset"],
        data_dir,
        val_size=settings["val_size"],
        train_size=settings["train_size"],
        seed=settings["seed"],
        device=device,
    )
    seed = trial.user_attrs["seed"]
    torch.manual_seed(seed)
    model = model.to(device)
    train_cfg = dataclasses.replace(config.train, epochs=epochs)
    fit(model, (splits.train_x,), (splits.val_x,), train_cfg, seed=seed)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), cache)
    return model, lineage
