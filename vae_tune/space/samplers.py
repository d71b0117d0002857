"""Optuna samplers and pruners from `{name: ..., option: value}` specs.

Options are passed explicitly (Optuna 5 changed TPE's defaults), and whatever the spec adds is
handed to the Optuna class as keyword arguments, so any option Optuna documents works.

A study's sampler draws each trial from a stream of its own, seeded by (study seed, trial
number): trial numbers are handed out by the storage, one per trial whatever process asks, so
processes on several machines that start in the same second draw different configurations,
and one process alone replays the same ones from the same --seed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

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


def study_sampler(spec: Mapping[str, Any], seed: int) -> optuna.samplers.BaseSampler:
    """The sampler a study runs with: each trial drawn from its own seeded stream. QMC needs no
    help: its point is chosen by the trial's place in the sequence, the same everywhere."""
    name = spec.get("name")
    if name == "qmc":
        return make_sampler(spec, seed)
    return TrialSeeded(lambda trial_seed: make_sampler({**spec, "seed": trial_seed}, seed), seed)


class TrialSeeded(optuna.samplers.BaseSampler):
    """A sampler made afresh for every trial, seeded by (seed, trial number). TPE and random
    sampling keep no state but their random stream (the history is read from the study), so
    a fresh one per trial is the same algorithm with a stream that belongs to the trial."""

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._make, self._seed = make, seed
        self._inner = self._fresh(0)

    def _fresh(self, number: int) -> optuna.samplers.BaseSampler:
        derived = int(np.random.SeedSequence([self._seed, number]).generate_state(1)[0])
        with warnings.catch_warnings():  # TPE's multivariate option warns on every construction
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return self._make(derived)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._inner = self._fresh(trial.number)
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


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
