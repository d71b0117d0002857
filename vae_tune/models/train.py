"""The training loop: `fit`, `evaluate`, `encode` and `predict` over in-memory tensors.
Knows no Optuna or MLflow.

A model exposes `loss_terms(*batch) -> {"loss": ..., other named terms}`; the loop minimises
`loss` and averages every term per epoch. Progress, pruning and logging all go through the
one `on_epoch_end` callback: an exception raised there (a pruning signal) ends the fit.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vae_tune.errors import ConfigError
from vae_tune.models.augment import ALTERNATING, alternating_flips, augment, first_flips
from vae_tune.models.averaging import WeightAverage
from vae_tune.models.config import TrainConfig
from vae_tune.models.graph import GraphEncoder
from vae_tune.models.nets import Autoencoder, Model
from vae_tune.models.precision import autocast, grad_scaler
from vae_tune.models.precision import check as check_precision

Tensors = Sequence[torch.Tensor]
# Evaluation batch: on a CPU, larger batches spill the conv activations out of cache (the
# batch-norm AE evaluates 1.5x faster at 512 than at 2048; measured on 2 cores).
EVAL_BATCH = 512


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the epoch and the split are in the message."""

    def __init__(self, epoch: int, split: str, terms: dict[str, float]) -> None:
        super().__init__(f"non-finite {split} loss at epoch {epoch}: {terms}")
        self.epoch = epoch


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    # train_<term>, val_<term>, epoch_time_s, train_images_per_s, val_images_per_s
    metrics: dict[str, float]


EpochCallback = Callable[[EpochResult], None]


def make_optimizer(model: Model, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer, over the model's parameter groups (a fine-tuned encoder
    learns at its own rate)."""
    factor = cfg.lr_factor()  # train.lr_scale: the rates scaled to the batch size
    if factor != 1.0:
        cfg = dataclasses.replace(cfg, lr=cfg.lr * factor, encoder_lr=cfg.encoder_lr * factor)
    params = model.param_groups(cfg)
    if cfg.bn_lr_scale != 1.0:  # else the groups as they always were
        params = norm_groups_scaled(model, params, cfg.lr, cfg.bn_lr_scale)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
    )


def norm_groups_scaled(
    model: nn.Module, params: Any, lr: float, scale: float
) -> list[dict[str, Any]]:
    """`params` (parameters, or groups of them) with each group's batch-norm weights and
    biases split off into a group of their own at `scale` times the group's rate (airbench:
    they tolerate a far higher rate than the convolutions they follow)."""
    norms = {
        id(p)
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        for p in m.parameters(recurse=False)
    }
    groups = list(params)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    split = []
    for group in groups:
        members = list(group["params"])
        rate = group.get("lr", lr)
        split.append({**group, "params": [p for p in members if id(p) not in norms]})
        split.append(
            {**group, "params": [p for p in members if id(p) in norms], "lr": rate * scale}
        )
    return [group for group in split if group["params"]]


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-step learning-rate multipliers of `cfg.schedule`; None for a constant rate.

    cosine: linear warm-up over the first 3 % of steps, then cosine decay to zero at the last
    step. Short studies gain most: the last epochs at a small rate settle into a minimum.
    onecycle: the short triangle of the fastest trainers (airbench): linear warm-up over the
    first 25 % of steps, then linear decay to 1/(decay steps) of the peak at the last step.
    """
    if cfg.schedule == "constant":
        return None
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = max(1, int((0.25 if cfg.schedule == "onecycle" else 0.03) * total))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if cfg.schedule == "onecycle":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def fit(
    model: Model,
    train: Tensors,
    val: Tensors | None,
    cfg: TrainConfig,
    *,
    seed: int = 0,
    on_epoch_end: EpochCallback | None = None,
    stop_after: int | None = None,
) -> list[EpochResult]:
    """Train for `cfg.epochs` epochs, evaluating on `val` (if given) after each epoch.

    `stop_after` ends the run after that many epochs of the same schedule: the learning rates
    and random streams of those epochs are the ones a full run has, so a trial selected at its
    best epoch is reproduced there, not squeezed into a shorter schedule.

    With `train.ema` the moving average of the weights is what each epoch validates and the
    callback sees, and what the model holds when the fit ends (averaging.py)."""
    if cfg.augment != "none" and train[0].dim() != 4:
        raise ConfigError("train.augment", "needs image inputs; a frozen head trains on latents")
    device = train[0].device
    check_precision(cfg.precision, device)
    use_fast_layout(model, device)
    optimizer = make_optimizer(model, cfg)
    scaler = grad_scaler(cfg.precision, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    n = len(train[0])
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch=-(-n // cfg.batch_size))
    # Drawn only when used: the random streams of every other config stay as they were.
    flips = first_flips(n, generator, device) if cfg.augment in ALTERNATING else None
    average = WeightAverage(model, cfg.ema) if cfg.ema else None
    history = []
    last = min(cfg.epochs, stop_after or cfg.epochs)
    for epoch in range(1, last + 1):
        started = time.perf_counter()
        model.train()
        sums: dict[str, torch.Tensor] = {}
        order = torch.randperm(n, device=device, generator=generator)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            inputs, *rest = (t[idx] for t in train)
            mirror = alternating_flips(flips, idx, epoch) if flips is not None else None
            with autocast(cfg.precision, device):
                terms = model.loss_terms(augment(cfg.augment, inputs, generator, mirror), *rest)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:  # fp16: scaled so that small gradients do not underflow
                scaler.scale(terms["loss"]).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                terms["loss"].backward()
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if average is not None:
                average.update(model)
            # Sum on the device; one sync per epoch instead of one per batch.
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.detach().float() * len(idx)
        train_terms = {name: float(total) / n for name, total in sums.items()}  # syncs
        _check_finite(epoch, "train", train_terms)
        trained = time.perf_counter()
        raw = average.swap_in(model) if average is not None else None
        val_terms = evaluate(model, val, precision=cfg.precision) if val is not None else {}
        _check_finite(epoch, "validation", val_terms)
        metrics = {f"train_{k}": v for k, v in train_terms.items()}
        metrics |= {f"val_{k}": v for k, v in val_terms.items()}
        ended = time.perf_counter()
        metrics["epoch_time_s"] = ended - started
        metrics["train_images_per_s"] = n / (trained - started)
        if val is not None and len(val[0]):
            metrics["val_images_per_s"] = len(val[0]) / (ended - trained)
        result = EpochResult(epoch, metrics)
        history.append(result)
        if on_epoch_end is not None:
            on_epoch_end(result)
        if raw is not None and epoch < last:  # training goes on from the raw weights
            WeightAverage.restore(model, raw)
    return history


def evaluate(
    model: Model,
    data: Tensors,
    batch_size: int = EVAL_BATCH,
    seed: int = 0,
    precision: str = "fp32",
) -> dict[str, float]:
    """Every loss term averaged over `data`, in eval mode and without autograd.

    Stochastic terms (a VAE's sampled z, a binarization) use a fixed seed, so the same model
    always gets the same value, without disturbing the training random stream.
    """
    model.eval()
    n = len(data[0])
    sums: dict[str, torch.Tensor] = {}
    device = data[0].device
    use_fast_layout(model, device)  # outside inference mode: the weights must stay trainable
    fork = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
    with fork, torch.inference_mode(), autocast(precision, device):
        torch.manual_seed(seed)
        for start in range(0, n, batch_size):
            batch = [t[start : start + batch_size] for t in data]
            for name, value in model.loss_terms(*batch).items():
                sums[name] = sums.get(name, 0.0) + value.float() * len(batch[0])
    return {name: float(total) / n for name, total in sums.items()}


def use_fast_layout(model: nn.Module, device: torch.device) -> None:
    """Conv weights channels-last on a CPU, where oneDNN runs them faster (measured on 2 cores
    for the batch-norm AE: evaluation 1.9x, training 1.06x in `fit`, 1.36x in a bare loop).
    Unmeasured on GPUs: left as is.
    In place, so an optimizer made before or after sees the same parameters."""
    if device.type == "cpu":
        model.to(memory_format=torch.channels_last)


def _check_finite(epoch: int, split: str, terms: dict[str, float]) -> None:
    if not all(math.isfinite(v) for v in terms.values()):
        raise NonFiniteLossError(epoch, split, terms)


@torch.no_grad()  # not inference_mode: the latents are inputs of head training later
def encode(
    model: Autoencoder | GraphEncoder, images: torch.Tensor, batch_size: int = 4096
) -> torch.Tensor:
    """The latents of `images` under an autoencoder's `encode`, a batch at a time."""
    model.eval()
    if len(images) == 0:
        return images.new_zeros(0, model.latent_dim)
    device = next(model.parameters()).device
    parts = [
        model.encode(images[i : i + batch_size].to(device))
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(parts).to(images.device)


@torch.no_grad()
def predict(classifier: nn.Module, images: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """The predicted class of each image, in eval mode, a batch at a time."""
    classifier.eval()
    return torch.cat(
        [
            classifier(images[i : i + batch_size]).argmax(1)
            for i in range(0, len(images), batch_size)
        ]
    )
