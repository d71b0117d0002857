"""The fastest trainers' tricks as training keys, on small synthetic tensors: label smoothing,
a moving average of the weights, the one-cycle schedule, alternating flips and the batch-norm
learning rate; each refused with its key when wrong, and searchable by a space."""

from __future__ import annotations

import copy
import itertools
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vae_tune.data.splits import Splits
from vae_tune.errors import ConfigError, SpaceError
from vae_tune.evaluation.tasks import HeadTask, PixelTask
from vae_tune.models.augment import alternating_flips, augment, first_flips
from vae_tune.models.averaging import decay_at
from vae_tune.models.config import HeadConfig, ModelConfig, TrainConfig, build_config, flatten
from vae_tune.models.nets import Classifier, MLPHead, Model, build_model
from vae_tune.models.saving import load_spec_file, save_spec_file
from vae_tune.models.train import EpochResult, evaluate, fit, make_optimizer, make_scheduler
from vae_tune.space.spaces import parse_space


def _latents(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    return torch.randn(n, 8, generator=g) + 2 * F.one_hot(y % 8, 8), y  # separable-ish


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(seed))


# -- label smoothing -------------------------------------------------------------------------


def test_label_smoothing_changes_the_training_loss_and_leaves_validation_plain() -> None:
    torch.manual_seed(0)
    plain = MLPHead(8, HeadConfig(dropout=0.0))
    smooth = copy.deepcopy(plain)
    smooth.label_smoothing = 0.2
    z, y = _latents(64)
    with torch.no_grad():
        train_plain = plain.train().loss_terms(z, y)
        train_smooth = smooth.train().loss_terms(z, y)
        expected = F.cross_entropy(smooth(z), y, label_smoothing=0.2)
    assert float(train_smooth["loss"]) != pytest.approx(float(train_plain["loss"]))
    assert float(train_smooth["loss"]) == pytest.approx(float(expected))
    assert train_smooth["accuracy"] == train_plain["accuracy"]
    # Evaluation (eval mode) scores plain cross-entropy: comparable across smoothing values.
    assert evaluate(smooth, (z, y)) == evaluate(plain, (z, y))
    history = fit(smooth, (z, y), (z, y), TrainConfig(epochs=2, batch_size=16, lr=1e-2))
    with torch.no_grad():
        logits = smooth.eval()(z)
    assert history[-1].metrics["val_loss"] == pytest.approx(float(F.cross_entropy(logits, y)))


def test_label_smoothing_reaches_the_classifiers_a_task_builds() -> None:
    images, labels = _images(32), torch.arange(32) % 10
    classes = tuple(str(i) for i in range(10))
    splits = Splits("fashion-mnist", images, labels, images[:8], labels[:8], classes)
    config = build_config({"train.label_smoothing": 0.1, "head.mode": "finetune"})
    encoder = build_model("ae", ModelConfig(latent_dim=4, image=(1, 16, 16)))
    classifier = HeadTask(encoder, splits).build(config)
    assert isinstance(classifier, Classifier) and classifier.head.label_smoothing == 0.1
    assert getattr(PixelTask(splits).build(config), "label_smoothing", None) == 0.1
    assert HeadTask(encoder, splits).build(build_config({})).label_smoothing == 0.0


def test_label_smoothing_is_refused_for_an_autoencoder_space() -> None:
    for stage in ("ae", "vae"):
        with pytest.raises(SpaceError, match=r"train\.label_smoothing"):
            parse_space(f"stage: {stage}\nfixed:\n  train.label_smoothing: 0.1\n")
    parse_space("stage: mlp\nfixed:\n  train.label_smoothing: 0.1\n")
    parse_space("stage: cnn\nfixed:\n  train.label_smoothing: 0.1\n")


# -- the moving average of the weights --------------------------------------------------------


def _floats(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and batch-norm statistics (not the integer batch counts)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}


def test_ema_weights_are_validated_and_returned_and_training_goes_on_from_the_raw_ones() -> None:
    """One step per epoch, so the average can be recomputed from the raw weights of a run
    without it (the average touches neither the training nor its random streams)."""
    cfg = ModelConfig(latent_dim=4, channels=(4, 4, 4), hidden=8, batchnorm=True, image=(1, 16, 16))
    torch.manual_seed(0)
    raw_model = build_model("ae", cfg)
    ema_model = copy.deepcopy(raw_model)
    train, val = (_images(32),), (_images(16, seed=1),)
    raw_states: list[dict[str, torch.Tensor]] = []
    seen: list[tuple[dict[str, torch.Tensor], float]] = []

    def keep_raw(result: EpochResult) -> None:
        raw_states.append(_floats(raw_model))

    def keep_seen(result: EpochResult) -> None:
        seen.append((_floats(ema_model), evaluate(ema_model, val)["loss"]))

    # Ten steps: the decay warms up to 0.5 by the eighth (decay_at).
    train_cfg = TrainConfig(lr=1e-2, epochs=10, batch_size=32)
    raw_history = fit(raw_model, train, val, train_cfg, seed=3, on_epoch_end=keep_raw)
    ema_cfg = TrainConfig(lr=1e-2, epochs=10, batch_size=32, ema=0.5)
    ema_history = fit(ema_model, train, val, ema_cfg, seed=3, on_epoch_end=keep_seen)

    # Training went on from the raw weights: the same training losses every epoch.
    for a, b in zip(raw_history, ema_history, strict=True):
        assert a.metrics["train_loss"] == pytest.approx(b.metrics["train_loss"], rel=1e-5)
    expected = raw_states[0]  # the first update copies
    for epoch, raw in enumerate(raw_states):
        if epoch:
            d = decay_at(0.5, epoch)
            expected = {k: d * expected[k] + (1 - d) * raw[k] for k in raw}
        state, val_loss = seen[epoch]
        for key in expected:  # batch-norm running statistics averaged too
            torch.testing.assert_close(state[key], expected[key], rtol=1e-5, atol=1e-6)
        assert ema_history[epoch].metrics["val_loss"] == pytest.approx(val_loss)
    final = _floats(ema_model)
    for key in expected:
        torch.testing.assert_close(final[key], expected[key], rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(final[k], raw_states[-1][k]) for k in final)
    assert any("running_mean" in k and not torch.equal(final[k], raw_states[-1][k]) for k in final)
    assert ema_history[-1].metrics["val_loss"] != raw_history[-1].metrics["val_loss"]


def test_the_average_warms_up_so_the_starting_weights_fade_within_a_short_run() -> None:
    """At a constant 0.999, twelve steps would leave 99 % of the starting weights in the
    average; warmed up, update k decays by min(0.999, (1 + k) / (10 + k)), TensorFlow's rule."""
    torch.manual_seed(0)
    start = nn.Linear(6, 3)
    inputs, targets = torch.randn(40, 6), torch.randn(40, 3)
    raw_states: list[dict[str, torch.Tensor]] = []

    class Regression(Model):
        def __init__(self) -> None:
            super().__init__()
            self.linear = copy.deepcopy(start)

        def loss_terms(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"loss": nn.functional.mse_loss(self.linear(x), y)}

    raw, averaged = Regression(), Regression()
    cfg = TrainConfig(lr=0.1, epochs=20, batch_size=40)  # one step an epoch
    fit(raw, (inputs, targets), None, cfg, on_epoch_end=lambda _: raw_states.append(_floats(raw)))
    fit(averaged, (inputs, targets), None, replace(cfg, ema=0.999), stop_after=12)

    assert decay_at(0.999, 1) == 2 / 11 and decay_at(0.999, 10**5) == 0.999
    expected, share_of_start = raw_states[0], 1.0
    for k, state in enumerate(raw_states[1:12], start=1):
        d = decay_at(0.999, k)
        expected = {key: d * expected[key] + (1 - d) * state[key] for key in state}
        share_of_start *= d
    assert share_of_start < 0.001  # at a constant 0.999: 0.989
    final = _floats(averaged)
    for key in expected:
        torch.testing.assert_close(final[key], expected[key], rtol=1e-5, atol=1e-6)


def test_an_averaged_classifier_is_the_same_class_and_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = build_model("ae", ModelConfig(latent_dim=4, batchnorm=True, image=(1, 16, 16)))
    model = Classifier(encoder, MLPHead(4, HeadConfig(hidden1=8, hidden2=8)))
    images, labels = _images(64), torch.arange(64) % 10
    fit(model, (images, labels), None, TrainConfig(epochs=2, batch_size=16, ema=0.9))
    path = tmp_path / "model.pt"
    save_spec_file(model, path, "test")
    loaded = load_spec_file(path)
    assert type(loaded) is Classifier
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model.eval()(images))


# -- the one-cycle schedule -------------------------------------------------------------------


def test_onecycle_rises_over_a_quarter_of_the_steps_then_falls_to_about_zero() -> None:
    model = nn.Linear(2, 2)
    cfg = TrainConfig(lr=0.1, epochs=4, batch_size=8, schedule="onecycle")
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch=50)
    assert scheduler is not None
    rates = []
    for _ in range(200):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    peak = rates.index(max(rates))
    assert peak in (49, 50) and max(rates) == pytest.approx(0.1)
    assert rates[0] < 0.01 and all(a < b for a, b in itertools.pairwise(rates[: peak + 1]))
    assert rates[peak + 1] == rates[peak]  # the top, then straight down
    assert all(a > b for a, b in itertools.pairwise(rates[peak + 1 :]))
    assert rates[-1] < 0.1 * 0.01  # the last step at about zero
    assert rates[125] == pytest.approx(0.1 * 0.5, rel=0.02)  # a straight line down


# -- alternating flips ------------------------------------------------------------------------


class _Recorder(Model):
    """Records each training batch it is shown, with the images' dataset positions."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def loss_terms(self, x: torch.Tensor, index: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.training:
            self.seen.append((x.clone(), index.clone()))
        return {"loss": self.weight * x.mean()}


def test_alternating_flips_mirror_each_image_exactly_every_other_epoch() -> None:
    epochs = 4
    images = _images(40)  # random pixels: no image is its own mirror
    model = _Recorder()
    cfg = TrainConfig(epochs=epochs, batch_size=16, augment="flip_alt")
    fit(model, (images, torch.arange(40)), None, cfg, seed=5)
    per_epoch = -(-40 // 16)
    mirrored = torch.zeros(epochs, 40, dtype=torch.bool)
    for step, (x, index) in enumerate(model.seen):
        flipped = (x == images[index].flip(3)).flatten(1).all(1)
        plain = (x == images[index]).flatten(1).all(1)
        assert (flipped ^ plain).all(), "each image shown as it is or mirrored, nothing else"
        mirrored[step // per_epoch, index] = flipped
    assert 10 < mirrored[0].sum() < 30  # the first epoch's draw: about half
    for epoch in range(1, epochs):
        assert torch.equal(mirrored[epoch], mirrored[0] ^ (epoch % 2 == 1))


def test_alternating_flips_with_shifts_follow_the_plan() -> None:
    images = torch.zeros(100, 1, 28, 28)
    images[:, 0, 10, 6] = 1.0  # one bright pixel, off the vertical axis
    generator = torch.Generator().manual_seed(0)
    first = first_flips(100, generator, images.device)
    index = torch.arange(100)
    for epoch in (1, 2):
        mirror = alternating_flips(first, index, epoch)
        out = augment("flip_alt_shift", images, generator, mirror)
        cols = (out[:, 0] == 1.0).nonzero()[:, 2]
        assert len(cols) == 100
        assert torch.equal((cols - (27 - 6)).abs() <= 2, mirror)
        assert torch.equal(mirror, first ^ (epoch == 2))


def test_alternating_flips_need_images() -> None:
    z, y = _latents(32)
    with pytest.raises(ConfigError, match=r"train\.augment"):
        fit(MLPHead(8, HeadConfig()), (z, y), None, TrainConfig(augment="flip_alt"))


# -- the batch-norm learning rate -------------------------------------------------------------


def test_bn_lr_scale_raises_the_rate_of_batch_norm_weights_only() -> None:
    encoder = build_model("ae", ModelConfig(latent_dim=4, batchnorm=True, image=(1, 16, 16)))
    model = Classifier(encoder, MLPHead(4, HeadConfig()))
    norms = {
        id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()
    }
    cfg = TrainConfig(lr=1e-3, encoder_lr=1e-4)
    default = make_optimizer(model, cfg)
    assert len(default.param_groups) == 2  # as it always was: encoder, head
    scaled = make_optimizer(model, TrainConfig(lr=1e-3, encoder_lr=1e-4, bn_lr_scale=8.0))
    rate = {id(p): g["lr"] for g in scaled.param_groups for p in g["params"]}
    before = {id(p): g["lr"] for g in default.param_groups for p in g["params"]}
    assert rate.keys() == before.keys() and norms
    for key, lr in rate.items():
        assert lr == pytest.approx(before[key] * (8.0 if key in norms else 1.0))


# -- keys: defaults, refusals, search spaces --------------------------------------------------


def test_the_new_keys_default_to_what_training_did_before() -> None:
    flat = flatten(build_config({}))
    assert flat["train.label_smoothing"] == 0.0 and flat["train.ema"] == 0.0
    assert flat["train.bn_lr_scale"] == 1.0 and flat["train.schedule"] == "constant"
    assert flat["train.augment"] == "none"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("train.label_smoothing", 1.0),
        ("train.label_smoothing", -0.1),
        ("train.label_smoothing", float("nan")),
        ("train.ema", 1.0),
        ("train.ema", -0.5),
        ("train.ema", 1.5),
        ("train.schedule", "triangle"),
        ("train.augment", "flip_alternate"),
        ("train.bn_lr_scale", 0.0),
        ("train.bn_lr_scale", float("inf")),
        ("train.ema", "0.999"),
    ],
)
def test_bad_values_are_refused_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_config({key: value})


SPACE = """
stage: mlp
fixed:
  head.mode: finetune
search:
  train.label_smoothing: {type: float, low: 0.0, high: 0.2}
  train.ema: {type: categorical, choices: [0.0, 0.99, 0.999]}
  train.schedule: {type: categorical, choices: [cosine, onecycle]}
  train.augment: {type: categorical, choices: [flip_shift, flip_alt, flip_alt_shift]}
  train.bn_lr_scale: {type: float, low: 1.0, high: 16.0, log: true}
"""


def test_a_space_searching_the_tricks_loads_and_samples_them() -> None:
    space = parse_space(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    schedules, augments = set(), set()
    for _ in range(12):
        trial = study.ask()
        config = space.config(space.sample(trial))
        assert 0.0 <= config.train.label_smoothing <= 0.2
        assert config.train.ema in (0.0, 0.99, 0.999)
        assert 1.0 <= config.train.bn_lr_scale <= 16.0
        schedules.add(config.train.schedule)
        augments.add(config.train.augment)
        flat = flatten(config)  # what MLflow logs: the same dotted names Optuna samples
        assert {k: flat[k] for k in trial.params} == trial.params
    assert schedules == {"cosine", "onecycle"} and len(augments) >= 2


@pytest.mark.parametrize(
    ("augment", "mirrored"),
    [("none", False), ("shift", False), ("flip_shift", True), ("flip_alt", True)],
)
def test_a_classifier_that_learned_mirrored_images_is_promoted_mirrored(
    augment: str, mirrored: bool
) -> None:
    from vae_tune.models.config import build_config
    from vae_tune.promotion.promote import mirrors

    config = build_config({"train.augment": augment})
    assert mirrors("mlp", config) is mirrored
    assert mirrors("ae", config) is False  # an encoder has no classes to average


def test_identity_like_init_starts_each_encoder_conv_as_a_pass_through() -> None:
    torch.manual_seed(0)
    dirac = build_model("ae", ModelConfig(channels=(4, 8, 8), batchnorm=True, init="dirac"))
    torch.manual_seed(0)
    plain = build_model("ae", ModelConfig(channels=(4, 8, 8), batchnorm=True))
    first, second, _ = (m for m in dirac.modules() if isinstance(m, nn.Conv2d))
    images = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        passed = F.conv2d(images, first.weight[:1], stride=2, padding=1)  # the bias left out
    torch.testing.assert_close(passed[:, 0], images[:, 0, 1::2, 1::2])  # k4 s2 p1: 28 -> 14
    # One identity filter per input channel; the rest, and every other layer, as torch draws them.
    assert torch.equal(second.weight[:4].flatten(2).argmax(-1).diagonal(), torch.full((4,), 10))
    plain_state = plain.state_dict()
    changed = [k for k, v in dirac.state_dict().items() if not torch.equal(v, plain_state[k])]
    assert len(changed) == 3 and all(k.endswith("weight") for k in changed)
    for key in changed:
        n = dirac.state_dict()[key].shape[1]
        assert torch.equal(dirac.state_dict()[key][n:], plain_state[key][n:])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"model.init": "orthogonal"}, r"model\.init: must be one of"),
        ({"model.init": "dirac", "model.family": "mlp"}, r"model\.init: dirac initialises conv"),
    ],
)
def test_identity_like_init_is_refused_where_it_means_nothing(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config(values)
