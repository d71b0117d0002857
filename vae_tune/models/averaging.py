"""An exponential moving average of a model's weights during `fit` (`train.ema`).

Batch-norm statistics are averaged with the weights (`use_buffers`): averaged weights under the
raw model's statistics would be judged on activations they never produced. The average is
swapped into the model itself for validation and the epoch's callback, so whatever reads the
model there (a probe, pictures, pruning) sees the weights that are judged; the fit leaves the
average in, so a trial, its promotion and the registered model (the same class, the averaged
state_dict) are all the averaged weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


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
