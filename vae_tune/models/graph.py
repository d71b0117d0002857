"""A registered encoder as its exported graph alone: what a frozen head trains on when the
encoder's class (a user's own model) cannot be imported here.

The registry's `model/` part of an autoencoder is a pt2 graph, images in, latents out, that
runs without the class it was traced from. It is frozen: exported in inference mode, it has no
training mode to switch to (torch refuses `.train()` and `.eval()` on it), so only heads on
its frozen latents can be trained. Its weights travel in a classifier's state_dict like any
encoder's; the graph itself does not, so a classifier built on one is rebuilt by MLflow (its
own pt2 graph), not by vae-tune's spec.
"""

from __future__ import annotations

import torch
from torch import nn

from vae_tune.errors import VaeTuneError


class GraphOnlyError(VaeTuneError):
    """Something needs the class of an encoder that is here only as its exported graph."""


class GraphEncoder(nn.Module):
    """Images (N, C, H, W) in [0, 1] to latents (N, latent_dim), through an exported graph."""

    def __init__(self, graph: nn.Module, latent_dim: int, origin: dict[str, str]) -> None:
        super().__init__()
        self.graph = graph
        self.latent_dim = latent_dim
        self.origin = origin  # the registered version: model, version, run_id, family, why
        for parameter in graph.parameters():
            parameter.requires_grad_(False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    def train(self, mode: bool = True) -> GraphEncoder:
        # Only this wrapper's flag: the graph is in inference mode for good, and raises if asked.
        self.training = mode
        return self

    def encoder_parameters(self) -> list[nn.Parameter]:
        raise GraphOnlyError(self.why_frozen("a fine-tuned head trains the encoder"))

    def why_frozen(self, what: str) -> str:
        """Why `what` cannot be done with this encoder, and how to make it possible again."""
        o = self.origin
        return (
            f"{what}, but the encoder {o['model']} version {o['version']} is here only as its "
            f"exported graph: {o['why']}. Make {o['family']} importable again (install the "
            "package that holds it, or put its folder on PYTHONPATH) to fine-tune it; a frozen "
            "head (search_spaces/mlp_frozen.yaml) trains on the graph as it is"
        )
