"""A user's own model: how a space names it, what vae-tune gives it, what it must give back.

A space names the model's factory (a class or a function) in `model.family`:

- by import path, `mypkg.nets:ResNetAE`, beside the built-in `conv` and `mlp`;
- or by the name an installed package gives it in the `vae_tune.models` entry point group.

vae-tune calls `factory(image=(C, H, W), latent_dim=..., **its_own_keys)`, and `dropout=...` too
where the factory takes it. The factory's other keyword parameters are its own keys: a space
sets or searches them as `model.<name>`, typed by their annotations (int, float, bool, str), and
those without a default are required. It returns a torch module with

- `encode(x) -> z`: images (N, C, H, W), standardized per channel, to latents
  (N, latent_dim);
- `decode(z) -> x_hat`: latents to images (N, C, H, W) in [0, 1], as the built-ins' decoders give
  (a sigmoid's output, not logits);
- for the `vae` stage, `posterior(x) -> (mu, logvar)`, each (N, latent_dim). The ELBO, its
  likelihood and the collapse metrics stay vae-tune's own.

Everything else is vae-tune's: the training loop, precision, augmentation, pruning, tracking,
pictures, promotion, the pt2 export and the registry.

Code runs only when the user names it: an installed entry point, or an import path that a space
loaded in this process names (`trust`) or that the user's own study recorded. A registry's spec
never decides what is imported.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vae_tune.errors import ConfigError, VaeTuneError

GROUP = "vae_tune.models"  # the entry point group installed packages name their models in
GIVEN = ("image", "latent_dim", "dropout")  # what vae-tune passes: not the model's own keys
KEY_TYPES = (int, float, bool, str)
REQUIRED = inspect.Parameter.empty
BUILT_IN = ("conv", "mlp")

Factory = Callable[..., nn.Module]
_trusted: set[str] = set()


class UserModelError(VaeTuneError):
    """The user's model failed: it did not build, gave the wrong shapes, or broke its contract."""


class UntrustedCodeError(VaeTuneError):
    """An import path that neither the user's space nor an installed entry point names."""


class MissingCodeError(ConfigError):
    """A model whose code is not here: its module does not import, or no installed package
    names it."""


@dataclass(frozen=True)
class Key:
    """One of a model's own keys: its type, and its default (REQUIRED if it has none)."""

    type: type
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def is_own(family: str) -> bool:
    """Whether `family` names a user's model rather than a built-in one."""
    return family not in BUILT_IN


def trust(family: str) -> None:
    """The user named this import path (in a space, or in a study of their own): it may be
    imported in this process."""
    if is_own(family):
        _trusted.add(family)


def check_family(family: str) -> None:
    """A family vae-tune can look for: built in, an import path, or an installed entry
    point's name (whether the import works is learnt when the model is built)."""
    if is_own(family) and ":" not in family:
        _entry_point(family)


def _entry_point(family: str) -> EntryPoint:
    found = [ep for ep in entry_points(group=GROUP) if ep.name == family]
    if not found:
        raise MissingCodeError(
            "model.family",
            f"{family!r} is not built in ({', '.join(BUILT_IN)}), not an import path "
            f"(package.module:Class), and no installed package names it in the {GROUP!r} "
            "entry point group",
        )
    return found[0]


def factory(family: str) -> Factory:
    """The factory `family` names: an import path (once trusted) or an installed entry point."""
    if ":" not in family:
        return _callable(family, _entry_point(family).load)
    if family not in _trusted:
        raise UntrustedCodeError(
            f"model {family} is imported only when your own search space names it (model.family),"
            " or an installed package does (entry point group vae_tune.models): a registry or a "
            "stored spec never decides what code runs. Load a space that names it first."
        )
    module, _, name = family.partition(":")
    return _callable(family, lambda: getattr(importlib.import_module(module), name))


def _callable(family: str, load: Callable[[], Any]) -> Factory:
    try:
        found = load()
    except (ImportError, AttributeError) as exc:
        raise MissingCodeError(
            "model.family",
            f"cannot import {family}: {type(exc).__name__}: {exc}. Install the package that "
            "holds it, or put its folder on PYTHONPATH",
        ) from exc
    if not callable(found):
        raise ConfigError("model.family", f"{family} is a {type(found).__name__}, not a class")
    return typing.cast(Factory, found)


def own_keys(family: str) -> dict[str, Key]:
    """The model's own keys, from its factory's keyword parameters and their annotations."""
    made = factory(family)
    target = made.__init__ if inspect.isclass(made) else made
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # a forward reference that does not resolve: no types to read
        hints = {}
    keys = {}
    for name, param in inspect.signature(made).parameters.items():
        if name in GIVEN or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        hint = hints.get(name)
        if hint not in KEY_TYPES:
            raise ConfigError(
                f"model.{name}",
                f"{family}: annotate parameter {name!r} as int, float, bool or str to make it a "
                f"key a space can set (it is {hint!r})",
            )
        keys[name] = Key(typing.cast(type, hint), param.default)
    return keys


def not_a_key(family: str, name: str) -> ConfigError:
    """The refusal of a key the model does not take, naming its keys."""
    known = ", ".join(sorted(own_keys(family))) or "none"
    return ConfigError(f"model.{name}", f"is not a key of {family} (its keys: {known})")


def missing_keys(family: str, given: set[str]) -> list[str]:
    """The model's required keys (no default) that `given` (without `model.`) leaves out."""
    return sorted(n for n, key in own_keys(family).items() if key.required and n not in given)


def build(
    family: str,
    image: tuple[int, ...],
    latent_dim: int,
    dropout: float,
    own: Mapping[str, Any],
    vae: bool,
) -> nn.Module:
    """The user's module, built from the trial's values and held to the contract by one
    forward pass on two random images: a failure names the call and what was expected."""
    made = factory(family)
    kwargs: dict[str, Any] = {"image": tuple(image), "latent_dim": latent_dim, **own}
    if "dropout" in inspect.signature(made).parameters:
        kwargs["dropout"] = dropout
    call = f"{family}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    try:
        net = made(**kwargs)
    except Exception as exc:
        raise UserModelError(f"{call} failed to build: {type(exc).__name__}: {exc}") from exc
    if not isinstance(net, nn.Module):
        raise UserModelError(f"{call} returned a {type(net).__name__}, not a torch.nn.Module")
    wanted = ("encode", "decode", "posterior") if vae else ("encode", "decode")
    lacking = [m for m in wanted if not callable(getattr(net, m, None))]
    if lacking:
        raise UserModelError(f"{call} has no {', '.join(lacking)} method (see the contract)")
    x = torch.rand(2, *image)
    expected = (len(x), latent_dim)
    net.eval()  # the probe leaves no trace: no batch-norm statistics of random images
    with torch.no_grad():
        if vae:
            posterior = _call(net, call, "posterior", x)
            if not (isinstance(posterior, tuple) and len(posterior) == 2):
                raise UserModelError(f"{call}.posterior must return (mu, logvar)")
            for name, part in zip(("mu", "logvar"), posterior, strict=True):
                _expect(call, f"posterior's {name}", part, expected, "(N, model.latent_dim)")
        z = _call(net, call, "encode", x)
        _expect(call, "encode", z, expected, "(N, model.latent_dim)")
        x_hat = _call(net, call, "decode", z)
        _expect(call, "decode", x_hat, tuple(x.shape), "(N, C, H, W), as its input")
    return net.train()


def _call(net: nn.Module, call: str, method: str, x: torch.Tensor) -> Any:
    try:
        return getattr(net, method)(x)
    except Exception as exc:
        raise UserModelError(
            f"{call}.{method} failed on a batch of shape {tuple(x.shape)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _expect(call: str, what: str, value: Any, shape: tuple[int, ...], meaning: str) -> None:
    got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
    if got != shape:
        raise UserModelError(f"{call}: {what} returned {got}; expected {shape}: {meaning}")


def source_hash(family: str) -> str:
    """A hash of the factory's source file: which code a registered champion was trained
    with, recorded in its spec (empty where the source cannot be read)."""
    try:
        path = inspect.getsourcefile(factory(family))
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else ""
    except (OSError, TypeError):
        return ""
