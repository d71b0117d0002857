"""What an epoch costs on this machine, measured in seconds before any study runs.

A few training steps and evaluation batches of the real model on the real tensors, timed after
a warm-up, then scaled to a whole epoch. The fastest of a few rounds counts: another process
that takes the CPU for a moment slows some rounds, not the machine. The pipeline plans its
budget with these figures; the studies then correct them with their own epoch times. The
logistic-regression baselines are timed too: they run on the CPU whatever trains the models,
so on a GPU they do not shrink with the epochs.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable

import torch

from vae_tune.evaluation.baselines import logistic_baselines
from vae_tune.models.augment import augment
from vae_tune.models.config import TrainConfig
from vae_tune.models.nets import Model
from vae_tune.models.precision import autocast
from vae_tune.models.train import EVAL_BATCH, Tensors, make_optimizer, use_fast_layout

WARMUP_STEPS = 3
ROUNDS = 3
STEPS_PER_ROUND = 5


def epoch_seconds(model: Model, train: Tensors, val: Tensors, cfg: TrainConfig) -> float:
    """Estimated seconds of one epoch of `fit` (training over `train`, evaluation of `val`)."""
    cfg = resolved(cfg, model, train)
    device = train[0].device
    train_step = _train_step_seconds(model, train, cfg)
    model.eval()

    def evaluate(i: int) -> None:
        start = (i * EVAL_BATCH) % max(1, len(val[0]) - EVAL_BATCH)
        with torch.inference_mode(), autocast(cfg.precision, device):
            model.loss_terms(*(t[start : start + EVAL_BATCH] for t in val))

    eval_step = _time_per_call(evaluate, device, steps=2)
    return (
        -(-len(train[0]) // cfg.batch_size) * train_step + -(-len(val[0]) // EVAL_BATCH) * eval_step
    )


def _train_step_seconds(model: Model, train: Tensors, cfg: TrainConfig) -> float:
    """Seconds of one training step of `fit` at `cfg`'s batch size and precision."""
    device = train[0].device
    use_fast_layout(model, device)
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator(device=device).manual_seed(0)
    n, batch = len(train[0]), cfg.batch_size

    def step(i: int) -> None:
        idx = torch.randint(0, n, (batch,), device=device, generator=generator)
        inputs, *rest = (t[idx] for t in train)
        with autocast(cfg.precision, device):
            terms = model.loss_terms(augment(cfg.augment, inputs, generator), *rest)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()

    model.train()
    return _time_per_call(step, device)


def _time_per_call(
    fn: Callable[[int], None], device: torch.device, steps: int = STEPS_PER_ROUND
) -> float:
    """Seconds per call: the fastest round of `steps` calls after a warm-up."""
    for i in range(WARMUP_STEPS):
        fn(i)
    rounds = []
    for r in range(ROUNDS):
        _sync(device)
        started = time.perf_counter()
        for i in range(steps):
            fn(WARMUP_STEPS + r * steps + i)
        _sync(device)
        rounds.append((time.perf_counter() - started) / steps)
    return min(rounds)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


BASELINE_SAMPLE = 4000  # training images the baselines are timed on (~1/12 of a fit on 48,000)


def baseline_seconds(
    latents: Callable[[torch.Tensor], torch.Tensor], train: Tensors, val: Tensors
) -> float:
    """Estimated seconds of one fit of the logistic-regression baselines on all of `train`
    (latents, PCA and pixels, as a head study and its promotion fit them): a fit on a sample,
    scaled by the number of images (lbfgs at a fixed iteration cap, PCA: linear in them)."""
    n = min(BASELINE_SAMPLE, len(train[0]))
    m = min(BASELINE_SAMPLE // 4, len(val[0]))
    (train_x, train_y), (val_x, val_y) = (t[:n] for t in train), (t[:m] for t in val)
    started = time.perf_counter()
    logistic_baselines(latents(train_x), latents(val_x), train_x, val_x, train_y, val_y)
    return (time.perf_counter() - started) * len(train[0]) / n


# Per process: the fastest precision of each kind of model on each device, measured once.
_FASTEST: dict[tuple[object, ...], str] = {}
BF16_GAIN = 1.1  # bf16 only when it is at least 10 % faster: else float32's exactness wins


def fastest_precision(model: Model, train: Tensors, cfg: TrainConfig) -> str:
    """`bf16` if this device trains `model` at least BF16_GAIN times faster in it than in
    float32 (timed steps of the real model on the real tensors), else `fp32`."""
    device = train[0].device
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "fp32"
    shape = getattr(model, "cfg", None)
    key = (
        device.type,
        type(model).__name__,
        repr(shape),
        tuple(train[0].shape[1:]),
        cfg.batch_size,
    )
    if key not in _FASTEST:
        probe = copy.deepcopy(model)
        seconds = {"fp32": float("inf"), "bf16": float("inf")}
        # Its own random streams: the trial's dropout and sampling draw what they would have
        # without this timing. Each precision twice, alternating: neither runs warmer.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for p in ("fp32", "bf16", "fp32", "bf16"):
                step = _train_step_seconds(probe, train, dataclasses.replace(cfg, precision=p))
                seconds[p] = min(seconds[p], step)
        _FASTEST[key] = "bf16" if seconds["fp32"] >= BF16_GAIN * seconds["bf16"] else "fp32"
    return _FASTEST[key]


def resolved(cfg: TrainConfig, model: Model, train: Tensors) -> TrainConfig:
    """`cfg` with `train.precision: auto` decided for this model on this device."""
    if cfg.precision != "auto":
        return cfg
    return dataclasses.replace(cfg, precision=fastest_precision(model, train, cfg))
