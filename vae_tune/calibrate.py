"""What an epoch costs on this machine, measured in seconds before any study runs.

A few training steps and evaluation batches of the real model on the real tensors, timed after
a warm-up, then scaled to a whole epoch. The fastest of a few rounds counts: another process
that takes the CPU for a moment slows some rounds, not the machine. The pipeline plans its
budget with these figures; the studies then correct them with their own epoch times.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from vae_tune.augment import augment
from vae_tune.config import TrainConfig
from vae_tune.models import Model
from vae_tune.train import EVAL_BATCH, Tensors, make_optimizer, use_fast_layout

WARMUP_STEPS = 3
ROUNDS = 3
STEPS_PER_ROUND = 5


def epoch_seconds(model: Model, train: Tensors, val: Tensors, cfg: TrainConfig) -> float:
    """Estimated seconds of one epoch of `fit` (training over `train`, evaluation of `val`)."""
    device = train[0].device
    use_fast_layout(model, device)
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator(device=device).manual_seed(0)
    n, batch = len(train[0]), cfg.batch_size

    def step(i: int) -> None:
        idx = torch.randint(0, n, (batch,), device=device, generator=generator)
        inputs, *rest = (t[idx] for t in train)
        terms = model.loss_terms(augment(cfg.augment, inputs, generator), *rest)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()

    model.train()
    train_step = _time_per_call(step, device)
    model.eval()

    def evaluate(i: int) -> None:
        start = (i * EVAL_BATCH) % max(1, len(val[0]) - EVAL_BATCH)
        with torch.inference_mode():
            model.loss_terms(*(t[start : start + EVAL_BATCH] for t in val))

    eval_step = _time_per_call(evaluate, device, steps=2)
    return -(-n // batch) * train_step + -(-len(val[0]) // EVAL_BATCH) * eval_step


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
