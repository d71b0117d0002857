"""Optuna samplers and pruners from `{name: ..., option: value}` specs.

Options are passed explicitly (Optuna 5 changed TPE's defaults), and whatever the spec adds is
handed to the Optuna class as keyword arguments, so any option Optuna documents works.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import optuna

# TPE as this project means it: multivariate (learning rate and weight decay interact),
# constant liar so parallel workers do not all sample the same point.
_TPE_DEFAULTS = {"multivariate": True, "constant_liar": True, "n_startup_trials": 5}

SAMPLERS = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "qmc": optuna.samplers.QMCSampler,
}
PRUNERS = {
    "hyperband": optuna.pruners.HyperbandPruner,
    "median": optuna.pruners.MedianPruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "threshold": optuna.pruners.ThresholdPruner,
    "none": optuna.pruners.NopPruner,
}


def make_sampler(spec: Mapping[str, Any], seed: int) -> optuna.samplers.BaseSampler:
    name, options = _split(spec, SAMPLERS, "sampler")
    if name == "tpe":
        options = {**_TPE_DEFAULTS, **options}
    options.setdefault("seed", seed)
    return _build(SAMPLERS[name], name, options, "sampler")


def make_pruner(spec: Mapping[str, Any], max_epochs: int) -> optuna.pruners.BasePruner:
    name, options = _split(spec, PRUNERS, "pruner")
    if name == "hyperband":
        # An explicit max_resource: 'auto' guesses it from the first finished trial, which is
        # wrong when that trial was pruned or when a resumed study changes nothing.
        options = {"min_resource": 1, "reduction_factor": 3, "max_resource": max_epochs, **options}
    if name == "percentile":  # `--pruner percentile` alone: keep the best quarter at each epoch
        options = {"percentile": 25.0, **options}
    if name == "threshold" and not {"lower", "upper"} & set(options):
        raise ValueError(
            "pruner 'threshold' needs a bound: give study.pruner.lower or study.pruner.upper "
            "in the space file (e.g. pruner: {name: threshold, upper: 0.05})"
        )
    return _build(PRUNERS[name], name, options, "pruner")


def _build(factory: Any, name: str, options: dict[str, Any], what: str) -> Any:
    """The Optuna object, or a ValueError that names the option it did not take."""
    try:
        return factory(**options)
    except TypeError as exc:
        raise ValueError(f"{what} {name!r}: {exc}; options given: {sorted(options)}") from None


def _split(spec: Mapping[str, Any], known: Mapping[str, Any], what: str) -> tuple[str, dict]:
    options = dict(spec)
    name = options.pop("name", None)
    if not isinstance(name, str) or name not in known:
        raise ValueError(f"unknown {what} {name!r}; choose one of {sorted(known)}")
    return name, options
