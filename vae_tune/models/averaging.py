"""An exponential moving average of a model's weights during `fit` (`train.ema`).

Batch-norm statistics are averaged with the weights (`use_buffers`): averaged weights under the
raw model's statistics would be judged on activations they never produced. The average is
swapped into the model itself for validation and the epoch's callback, so whatever reads the
model there (a probe, pictures, pruning) sees the weights that are judged; the fit leaves the
average in, so a trial, its promotion and the registered model (the same class, the averaged
state_dict) are all the averaged weights.

A run too short for its decay averages fewer steps (`effective_decay`): the first update copies
the starting weights (a fresh head's random ones), and a decay of 0.999 over a pipeline's
3-epoch head (1,125 steps) would still hold a third of them at the end.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

# The starting weights' share of the average at the run's end is at most exp(-HORIZONS).
HORIZONS = 5


def effective_decay(decay: float, total_steps: int) -> float:
    """`decay`, lowered where the run is too short for it: the average then spans at most a
    fifth of the run's steps. 0.999 holds from 5,000 steps (25 epochs of 48,000 images at batch
    128 are 9,375); over 1,125 steps it becomes 0.9956."""
    return min(decay, max(0.0, 1.0 - HORIZONS / max(1, total_steps)))


class WeightAverage:
    """The moving average of `model`'s parameters and buffers, with `decay` per step."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.average = AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
        )

    def update(self, model: nn.Module) -> None:
        """One step's update (the first copies the weights)."""
        self.average.update_parameters(model)

    def swap_in(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Load the average into `model` in place (an optimizer keeps its parameters); its
        raw weights are returned, for `restore` before training goes on."""
        raw = {name: value.clone() for name, value in model.state_dict().items()}
        model.load_state_dict(self.average.module.state_dict())
        return raw

    @staticmethod
    def restore(model: nn.Module, raw: dict[str, torch.Tensor]) -> None:
        model.load_state_dict(raw)
