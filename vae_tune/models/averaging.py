"""An exponential moving average of a model's weights during `fit` (`train.ema`).

Batch-norm statistics are averaged with the weights (`use_buffers`): averaged weights under the
raw model's statistics would be judged on activations they never produced. The average is
swapped into the model itself for validation and the epoch's callback, so whatever reads the
model there (a probe, pictures, pruning) sees the weights that are judged; the fit leaves the
average in, so a trial, its promotion and the registered model (the same class, the averaged
state_dict) are all the averaged weights.

The decay warms up as TensorFlow's ExponentialMovingAverage does: update k uses
min(decay, (1 + k) / (10 + k)), so the average follows the weights closely while they move fast
and reaches the full decay after about 9 / (1 - decay) updates (9,000 at 0.999). Without it the
first update's copy of the starting weights (a fresh head's random ones) holds decay^k of the
average: at 0.999, 69 % after one epoch of 375 steps and 32 % after three, so the epochs a
pruner judges, and a pipeline's short heads, were judged on an average still mostly random.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

WARMUP = 10  # TensorFlow's constant: update k decays by min(decay, (1 + k) / (WARMUP + k))


def decay_at(decay: float, update: int) -> float:
    """The decay of the `update`-th update after the first (which copies the weights)."""
    return min(decay, (1 + update) / (WARMUP + update))


class WeightAverage:
    """The moving average of `model`'s parameters and buffers, with `decay` per step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.average = AveragedModel(model, multi_avg_fn=self._blend, use_buffers=True)

    def _blend(
        self,
        averaged: tuple[torch.Tensor, ...] | list[torch.Tensor],
        current: tuple[torch.Tensor, ...] | list[torch.Tensor],
        n_averaged: torch.Tensor | int,
    ) -> None:
        # Counted here, not read from n_averaged: that would sync with the device every step.
        get_ema_multi_avg_fn(decay_at(self.decay, self.updates))(averaged, current, n_averaged)

    def update(self, model: nn.Module) -> None:
        """One step's update (the first copies the weights)."""
        self.average.update_parameters(model)
        self.updates += 1

    def swap_in(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Load the average into `model` in place (an optimizer keeps its parameters); its
        raw weights are returned, for `restore` before training goes on."""
        raw = {name: value.clone() for name, value in model.state_dict().items()}
        model.load_state_dict(self.average.module.state_dict())
        return raw

    @staticmethod
    def restore(model: nn.Module, raw: dict[str, torch.Tensor]) -> None:
        model.load_state_dict(raw)
