"""The training loop: `fit` and `evaluate` over in-memory tensors. Knows no Optuna or MLflow.

A model exposes `loss_terms(*batch) -> {"loss": ..., other named terms}`; the loop minimises
`loss` and averages every term per epoch. Progress, pruning and logging all go through the
one `on_epoch_end` callback: an exception raised there (a pruning signal) ends the fit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from vae_tune.config import TrainConfig

Tensors = Sequence[torch.Tensor]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the epoch and the split are in the message."""

    def __init__(self, epoch: int, split: str, terms: dict[str, float]) -> None:
        super().__init__(f"non-finite {split} loss at epoch {epoch}: {terms}")
        self.epoch = epoch


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    metrics: dict[str, float]  # train_<term>, val_<term>, epoch_time_s


EpochCallback = Callable[[EpochResult], None]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer; models with `param_groups(cfg)` set per-group learning rates."""
    params = model.param_groups(cfg) if hasattr(model, "param_groups") else model.parameters()
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
    )


def fit(
    model: nn.Module,
    train: Tensors,
    val: Tensors | None,
    cfg: TrainConfig,
    *,
    seed: int = 0,
    on_epoch_end: EpochCallback | None = None,
) -> list[EpochResult]:
    """Train for `cfg.epochs` epochs, evaluating on `val` (if given) after each epoch."""
    optimizer = make_optimizer(model, cfg)
    device = train[0].device
    generator = torch.Generator(device=device).manual_seed(seed)
    n = len(train[0])
    history = []
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        model.train()
        sums: dict[str, torch.Tensor] = {}
        order = torch.randperm(n, device=device, generator=generator)
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            terms = model.loss_terms(*(t[idx] for t in train))
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            # Sum on the device; one sync per epoch instead of one per batch.
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.detach() * len(idx)
        train_terms = {name: float(total) / n for name, total in sums.items()}
        _check_finite(epoch, "train", train_terms)
        val_terms = evaluate(model, val) if val is not None else {}
        _check_finite(epoch, "validation", val_terms)
        metrics = {f"train_{k}": v for k, v in train_terms.items()}
        metrics |= {f"val_{k}": v for k, v in val_terms.items()}
        metrics["epoch_time_s"] = time.perf_counter() - started
        result = EpochResult(epoch, metrics)
        history.append(result)
        if on_epoch_end is not None:
            on_epoch_end(result)
    return history


@torch.inference_mode()
def evaluate(
    model: nn.Module, data: Tensors, batch_size: int = 2048, seed: int = 0
) -> dict[str, float]:
    """Every loss term averaged over `data`, in eval mode and without autograd.

    Stochastic terms (a VAE's sampled z, a binarization) use a fixed seed, so the same model
    always gets the same value, without disturbing the training random stream.
    """
    model.eval()
    n = len(data[0])
    sums: dict[str, torch.Tensor] = {}
    device = data[0].device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, n, batch_size):
            batch = [t[start : start + batch_size] for t in data]
            for name, value in model.loss_terms(*batch).items():
                sums[name] = sums.get(name, 0.0) + value * len(batch[0])
    return {name: float(total) / n for name, total in sums.items()}


def _check_finite(epoch: int, split: str, terms: dict[str, float]) -> None:
    if not all(math.isfinite(v) for v in terms.values()):
        raise NonFiniteLossError(epoch, split, terms)
