"""Where a study's run options come from, in one order: command line > space file > default.

The seed drives the split, the sampler and every trial seed; a space file may give it as
`study.sampler.seed`. The shipped spaces leave it out, so `--seed` (default 0) decides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from vae_tune.errors import VaeTuneError
from vae_tune.space.extras import Extras, parse_duration, parse_sources, parse_target
from vae_tune.space.samplers import make_pruner, make_sampler
from vae_tune.space.spaces import SearchSpace, StudySettings, objective_metrics
from vae_tune.space.stages import stage

DEFAULT_SEED = 0
DEFAULT_N_TRIALS = 12


@dataclass(frozen=True)
class CommandLine:
    """What the user typed; None where an option was left out."""

    seed: int | None = None
    n_trials: int | None = None
    epochs: int | None = None
    sampler: str | None = None
    pruner: str | None = None
    patience: int | None = None
    objective: str | None = None  # elbo, probe, elbo,probe (an AE's: loss, probe, loss,probe)
    warm_start: str | None = None  # NAME or STORAGE::NAME, comma-separated
    trial_timeout: str | float | None = None  # seconds, or 90s, 10m, 1.5h
    target: float | None = None


@dataclass(frozen=True)
class RunOptions:
    """The options a study runs with, each from the first source that gives it."""

    seed: int
    n_trials: int
    patience: int | None
    extras: Extras = field(default_factory=Extras)  # warm start, trial time-out, target


def first(*values: Any) -> Any:
    """The first value that is not None (the precedence order, left to right)."""
    return next((v for v in values if v is not None), None)


def resolve(cli: CommandLine, space: SearchSpace) -> tuple[SearchSpace, RunOptions]:
    """The space with the command line's overrides applied, and the run options."""
    settings = space.settings
    try:
        if cli.sampler:
            settings = dataclasses.replace(settings, sampler={"name": cli.sampler})
            make_sampler(settings.sampler, seed=0)
        if cli.pruner:
            settings = dataclasses.replace(settings, pruner={"name": cli.pruner})
            make_pruner(settings.pruner, max_epochs=1)
    except ValueError as exc:
        raise VaeTuneError(str(exc)) from exc
    if cli.objective:
        metrics, directions = objective_metrics(stage(space.stage), cli.objective, "--objective")
        settings = dataclasses.replace(settings, metrics=metrics, directions=directions)
    seed = first(cli.seed, settings.sampler.get("seed"), DEFAULT_SEED)
    # The sampler's seed is derived from the resolved seed (studies/lifecycle.py), never read
    # twice.
    sampler = {k: v for k, v in settings.sampler.items() if k != "seed"}
    space = dataclasses.replace(space, settings=dataclasses.replace(settings, sampler=sampler))
    if cli.epochs is not None:
        space = space.with_fixed({"train.epochs": cli.epochs})
    options = RunOptions(
        seed=int(seed),
        n_trials=first(cli.n_trials, settings.n_trials, DEFAULT_N_TRIALS),
        patience=first(cli.patience, settings.patience),
        extras=resolve_extras(cli, settings),
    )
    if options.patience and settings.multi:
        raise VaeTuneError("--patience needs one objective: a Pareto front has no single best")
    return space, options


def resolve_extras(cli: CommandLine, settings: StudySettings) -> Extras:
    """Warm start, trial time-out and target: each from the command line, else the space."""
    warm = parse_sources(cli.warm_start, "--warm-start") if cli.warm_start else None
    timeout = None
    if cli.trial_timeout is not None:
        timeout = parse_duration(cli.trial_timeout, "--trial-timeout")
    target = None if cli.target is None else parse_target(cli.target, "--target")
    extras = Extras(
        warm_start=first(warm, settings.warm_start),
        trial_timeout=first(timeout, settings.trial_timeout),
        target=first(target, settings.target),
    )
    if extras.target is not None and settings.multi:
        raise VaeTuneError(
            f"--target {extras.target:g} needs one objective: a study of "
            f"{', '.join(settings.metrics)} has a Pareto front, no single value to reach"
        )
    return extras
