"""The training loop on small synthetic tensors: learning, callbacks, NaN guard, determinism."""

from __future__ import annotations

import itertools

import pytest
import torch

from vae_tune.errors import ConfigError
from vae_tune.models.augment import flip_shift
from vae_tune.models.config import ModelConfig, TrainConfig
from vae_tune.models.nets import build_model
from vae_tune.models.train import EpochResult, NonFiniteLossError, evaluate, fit, make_scheduler


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
        fit(
            model,
            (_images(64),),
            (_images(16),),
            TrainConfig(epochs=5, batch_size=16),
            on_epoch_end=on_epoch_end,
        )
    assert [r.epoch for r in seen] == [1, 2]
    assert {"train_loss", "val_loss", "train_mse", "val_mse", "epoch_time_s"} <= set(
        seen[0].metrics
    )
    assert seen[0].metrics["train_images_per_s"] > 0
    assert seen[0].metrics["val_images_per_s"] > 0


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


def test_cosine_schedule_warms_up_then_decays_to_zero() -> None:
    model = build_model("ae", ModelConfig(latent_dim=4))
    cfg = TrainConfig(lr=0.01, epochs=4, batch_size=8, schedule="cosine")
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch=25)
    rates = []
    for _ in range(100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] < rates[3] == pytest.approx(0.01)  # warm-up: 3 steps of 100
    assert all(a >= b for a, b in itertools.pairwise(rates[3:]))  # then only down
    assert rates[-1] < 0.01 * 0.01
    assert make_scheduler(optimizer, TrainConfig(), steps_per_epoch=25) is None


def test_cosine_schedule_trains_in_fit() -> None:
    torch.manual_seed(0)
    model = build_model("ae", ModelConfig(latent_dim=8))
    cfg = TrainConfig(lr=3e-3, epochs=3, batch_size=32, schedule="cosine")
    history = fit(model, (_images(256),), (_images(64),), cfg)
    assert history[-1].metrics["val_loss"] < history[0].metrics["val_loss"]


def test_flip_shift_moves_each_image_by_at_most_two_pixels() -> None:
    images = torch.zeros(200, 1, 28, 28)
    images[:, 0, 10, 6] = 1.0  # one bright pixel, off the vertical axis
    out = flip_shift(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    rows, cols = (out[:, 0] == 1.0).nonzero()[:, 1:].T
    assert len(rows) == 200 and out.sum() == 200  # every image keeps its pixel, nothing else
    assert ((rows - 10).abs() <= 2).all()
    mirrored = (cols - (27 - 6)).abs() <= 2
    assert (mirrored | ((cols - 6).abs() <= 2)).all()
    assert 50 < mirrored.sum() < 150  # about half are flipped
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 20  # shifts vary


def test_augment_needs_images() -> None:
    head_inputs = (torch.randn(32, 8), torch.randint(0, 10, (32,)))
    with pytest.raises(ConfigError, match=r"train\.augment"):
        fit(torch.nn.Linear(8, 10), head_inputs, None, TrainConfig(augment="flip_shift"))


def test_bf16_trains_and_reports_float32_terms() -> None:
    torch.manual_seed(0)
    model = build_model("ae", ModelConfig(latent_dim=8))
    train, val = _images(256), _images(64, seed=0)
    before = evaluate(model, (val,))["loss"]
    cfg = TrainConfig(lr=3e-3, epochs=3, batch_size=32, precision="bf16")
    history = fit(model, (train,), (val,), cfg)
    assert history[-1].metrics["val_loss"] < before
    assert all(p.dtype == torch.float32 for p in model.parameters()), "weights stay float32"


def test_precisions_the_device_cannot_run_are_refused() -> None:
    model = build_model("ae", ModelConfig(latent_dim=4))
    for precision, message in (("fp16", "fp16 needs a CUDA device"), ("auto", "auto is decided")):
        with pytest.raises(ConfigError, match=message):
            fit(model, (_images(32),), None, TrainConfig(epochs=1, precision=precision))


def test_auto_precision_is_measured_once_per_kind_of_model() -> None:
    from vae_tune.evaluation.calibrate import _FASTEST, resolved

    model = build_model("ae", ModelConfig(latent_dim=4))
    cfg = TrainConfig(batch_size=32, precision="auto")
    chosen = resolved(cfg, model, (_images(128),))
    assert chosen.precision in ("fp32", "bf16") and len(_FASTEST) >= 1
    again = resolved(cfg, build_model("ae", ModelConfig(latent_dim=4)), (_images(128),))
    assert again.precision == chosen.precision
