"""What a registered champion computes, as MLflow Models that MLflow alone loads and serves.

Each part is saved with `mlflow.pytorch.save_model` in the pt2 format (`torch.export`: a graph
and its weights, no pickle, no class path), with a signature, an input example and a dynamic
batch size, so `mlflow.pytorch.load_model`, `mlflow.pyfunc` and `mlflow models serve` work on a
machine without vae-tune:

- a classifier (head or pixel CNN) is one part, `model/`: images in, class logits out;
- an autoencoder is two: `model/`, images in, latents out (a VAE's posterior mean), which is
  what a head or a search index consumes, and `decoder/`, latents in, images out. Two graphs
  rather than one with two outputs, because pyfunc and the REST server take one tensor in and
  give one out.

vae-tune's own spec and state_dict travel inside `model/` (`extra_files/vae_tune.pt`): the whole
model, decoder included, for fine-tuning from a champion.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vae_tune.errors import VaeTuneError
from vae_tune.models.nets import Autoencoder, Model
from vae_tune.models.saving import save_spec_file

SPEC_FILE = "vae_tune.pt"  # inside extra_files/ of the main part
SPEC_FORMAT = "vae-tune/2"
MAIN, DECODER = "model", "decoder"


class Encoding(nn.Module):
    """Images -> latents of an autoencoder (a VAE's posterior mean)."""

    def __init__(self, autoencoder: Autoencoder) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.encode(images)


class Decoding(nn.Module):
    """Latents -> images in [0, 1] (a VAE's mean of p(x | z))."""

    def __init__(self, autoencoder: Autoencoder) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decode(latents)


@dataclass(frozen=True)
class Part:
    """One MLflow Model of a champion: its folder name in the run, what it computes."""

    name: str
    module: nn.Module
    example: np.ndarray  # a few real inputs: the input example, and what torch.export traces
    computes: str


def parts(model: Model, images: torch.Tensor) -> list[Part]:
    """The MLflow Models a champion is registered as, traced on a few of its `images`."""
    model = copy.deepcopy(model).cpu().eval()
    model.to(memory_format=torch.contiguous_format)  # the CPU's channels-last is a training trick
    x = images[:4].detach().cpu().float().contiguous()
    shape = "x".join(str(s) for s in x.shape[1:])
    if not isinstance(model, Autoencoder):
        return [Part(MAIN, model, x.numpy(), f"images (N, {shape}) in [0, 1] -> class logits")]
    encoding = Encoding(model).eval()
    with torch.no_grad():
        z = encoding(x)
    latent = f"latents (N, {z.shape[1]})"
    return [
        Part(MAIN, encoding, x.numpy(), f"images (N, {shape}) in [0, 1] -> {latent}"),
        Part(DECODER, Decoding(model).eval(), z.numpy(), f"{latent} -> images in [0, 1]"),
    ]


def save_parts(model: Model, images: torch.Tensor, folder: Path) -> list[str]:
    """Each part of `model` saved as an MLflow Model under `folder/NAME`; the names."""
    import mlflow.pytorch
    from mlflow.models import infer_signature  # mlflow loads only when a champion is saved

    names = []
    for part in parts(model, images):
        with torch.no_grad():
            output = part.module(torch.from_numpy(part.example)).numpy()
        extra = [str(_spec_file(model, folder))] if part.name == MAIN else None
        mlflow.pytorch.save_model(
            part.module,
            str(folder / part.name),
            serialization_format="pt2",
            signature=infer_signature(part.example, output),
            input_example=part.example,
            # Pinned here: inferring them would load the model once more in a subprocess.
            pip_requirements=mlflow.pytorch.get_default_pip_requirements(),
            extra_files=extra,
            metadata={"vae_tune.computes": part.computes, "vae_tune.part": part.name},
        )
        names.append(part.name)
    return names


class ExportError(VaeTuneError):
    """A model that torch.export cannot trace: it cannot be registered."""


@dataclass(frozen=True)
class Exported:
    """A model's parts, saved as MLflow Models under `folder/NAME`: ready to be logged."""

    folder: Path
    names: list[str]


@contextmanager
def exported(model: Model, images: torch.Tensor, what: str) -> Iterator[Exported]:
    """`model`'s parts, saved into a folder that lasts for the block. A model that cannot be
    exported is refused (ExportError) before the block runs: a promotion reads the test split
    in it, and registers the very files checked here."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            names = save_parts(model, images, Path(tmp))
        except Exception as exc:
            raise ExportError(
                f"{what} cannot be exported as a pt2 MLflow Model (torch.export), so it cannot be "
                f"registered: {type(exc).__name__}: {exc}. Refused before the test split was "
                "read; make its forward pass traceable (no data-dependent Python control flow)."
            ) from exc
        yield Exported(Path(tmp), names)


def _spec_file(model: Model, folder: Path) -> Path:
    """vae-tune's own save of the whole model: its spec (plain data) and its state_dict."""
    path = folder / "spec" / SPEC_FILE
    path.parent.mkdir(exist_ok=True)
    save_spec_file(model, path, SPEC_FORMAT)
    return path


def usage(name: str, parts: list[str]) -> str:
    """How to use a registered version, for its description in the registry: where users look
    first. A pt2 graph loaded by MLflow refuses `.eval()` (torch raises NotImplementedError for
    exported graphs), the first line of most PyTorch inference snippets, so it says why that is
    not needed and what to call instead."""
    output = "latents (a VAE's posterior mean)" if DECODER in parts else "class logits"
    decoder = (
        f"\n\nIts decoder (latents in, images in [0, 1] out) is the run's `{DECODER}/` "
        f"model, named by the version's tag `vae_tune.{DECODER}`."
        if DECODER in parts
        else ""
    )
    return f"""Registered by vae-tune. MLflow alone loads and serves it (no vae-tune needed):

```python
model = mlflow.pytorch.load_model("models:/{name}@champion")
with torch.inference_mode():
    out = model(images)  # float32 (N, C, H, W) in [0, 1] -> {output}
```

It is an exported graph (torch.export, pt2), already in inference mode: dropout is off and
batch norm uses its running statistics. Do not call `model.eval()` or `model.train()`: torch
raises NotImplementedError for exported graphs. To fine-tune it or call `.eval()`, load it as
a regular `torch.nn.Module` with `vae_tune.load_champion(...)`.{decoder}"""
