"""Each complete trial's model, kept in its MLflow run as `weights/state_dict.pt`: the weights its
study judged it on (its best epoch's; a multi-objective trial's last), tensors only.

A promotion without a retrain (`promote --no-retrain`) tests and registers these weights as
they are, so a short budget is not spent training the champion a second time. They are read
back with `torch.load(weights_only=True)` into the model the trial's config builds: nothing is
unpickled.
"""

from __future__ import annotations

import io

import torch
from torch import nn

from vae_tune.tracking.tracker import Tracker

KEPT_MODEL = "weights/state_dict.pt"  # not model/: MLflow reads that as a logged model

State = dict[str, torch.Tensor]


def snapshot(model: nn.Module) -> State:
    """A copy of `model`'s weights, on the CPU: training may go on and change the model."""
    return {name: value.detach().to("cpu", copy=True) for name, value in model.state_dict().items()}


def keep(tracker: Tracker, run_id: str, state: State) -> None:
    """`state` as the run's kept model."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    tracker.log_artifact_bytes(run_id, KEPT_MODEL, buffer.getvalue())


def kept(tracker: Tracker, run_id: str) -> State | None:
    """The run's kept weights; None if it kept none (a trial run before 0.5, or one whose save
    failed)."""
    data = tracker.artifact_bytes(run_id, KEPT_MODEL)
    if data is None:
        return None
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    assert isinstance(state, dict)
    return state
