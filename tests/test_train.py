"""The training loop on small synthetic tensors: learning, callbacks, NaN guard, determinism."""

from __future__ import annotations

import pytest
import torch

from vae_tune.config import ModelConfig, TrainConfig
from vae_tune.models import build_model
from vae_tune.train import EpochResult, NonFiniteLossError, evaluate, fit


def _images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # Blobs with structure, so an autoencoder can learn something in a few epochs.
    base = torch.rand(4, 1, 28, 28, generator=g)
    return base[torch.randint(0, 4, (n,), generator=g)].clamp(0, 1)


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_fit_reduces_validation_loss(optimizer: str) -> None:
    torch.manual_seed(0)
    model = build_model("ae", ModelConfig(latent_dim=8))
    train, val = _images(256), _images(64, seed=0)
    before = evaluate(model, (val,))["loss"]
    lr = 0.05 if optimizer == "sgd" else 3e-3
    cfg = TrainConfig(optimizer=optimizer, lr=lr, epochs=5, batch_size=32)
    history = fit(model, (train,), (val,), cfg)
    assert [h.epoch for h in history] == [1, 2, 3, 4, 5]
    assert history[-1].metrics["val_loss"] < before


def test_callback_sees_every_epoch_and_can_stop_training() -> None:
    model = build_model("ae", ModelConfig(latent_dim=4))
    seen: list[EpochResult] = []

    class Stop(Exception):
        pass

    def on_epoch_end(result: EpochResult) -> None:
        seen.append(result)
        if result.epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        fit(model, (_images(64),), (_images(16),), TrainConfig(epochs=5, batch_size=16),
            on_epoch_end=on_epoch_end)  # fmt: skip
    assert [r.epoch for r in seen] == [1, 2]
    assert {"train_loss", "val_loss", "train_mse", "val_mse", "epoch_time_s"} <= set(
        seen[0].metrics
    )


def test_nan_loss_raises_with_the_epoch() -> None:
    model = build_model("ae", ModelConfig(latent_dim=4))
    bad = _images(32)
    bad[3, 0, 5, 5] = float("nan")
    with pytest.raises(NonFiniteLossError, match="epoch 1") as info:
        fit(model, (bad,), (_images(8),), TrainConfig(epochs=3, batch_size=8))
    assert info.value.epoch == 1


def test_same_seed_same_result() -> None:
    def run() -> float:
        torch.manual_seed(7)
        model = build_model("ae", ModelConfig(latent_dim=4, dropout=0.1))
        cfg = TrainConfig(epochs=2, batch_size=16)
        return fit(model, (_images(64),), (_images(16),), cfg, seed=3)[-1].metrics["val_loss"]

    assert run() == run()


def test_evaluate_does_not_track_gradients() -> None:
    model = build_model("ae", ModelConfig(latent_dim=4, dropout=0.5))
    x = _images(16)
    a, b = evaluate(model, (x,)), evaluate(model, (x,))
    assert a == b  # eval mode: dropout off, deterministic
    assert not model.training
