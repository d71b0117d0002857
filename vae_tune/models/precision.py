"""Numeric precision of training and evaluation: `train.precision`.

`fp32` as always; `bf16`: autocast to bfloat16 (matrix products and convolutions in bfloat16,
reductions and losses in float32), on CPUs and GPUs; `fp16`: autocast to float16 with a
gradient scaler, CUDA only; `auto`: bf16 where this device runs the model faster, as measured
(`calibrate.fastest_precision`), else fp32. The weights and the optimizer stay in float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from vae_tune.errors import ConfigError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check(precision: str, device: torch.device) -> None:
    """A precision this device can run, or a ConfigError naming the key."""
    if precision == "auto":
        raise ConfigError("train.precision", "auto is decided before training (calibrate.py)")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision", f"fp16 needs a CUDA device, not {device.type}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("train.precision", "bf16: this GPU has no bfloat16 support")


@contextlib.contextmanager
def autocast(precision: str, device: torch.device) -> Iterator[None]:
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=_DTYPES[precision]):
        yield


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """float16 gradients underflow without loss scaling; bfloat16 has float32's range."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
