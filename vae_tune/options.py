"""Where a study's run options come from, in one order: command line > space file > default.

The seed drives the split, the sampler and every trial seed; a space file may give it as
`study.sampler.seed`. The shipped spaces leave it out, so `--seed` (default 0) decides.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from vae_tune.errors import VaeTuneError
from vae_tune.samplers import make_pruner, make_sampler
from vae_tune.space import SearchSpace, objective_metrics
from vae_tune.stages import stage

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


@dataclass(frozen=True)
class RunOptions:
    """The options a study runs with, each from the first source that gives it."""

    seed: int
    n_trials: int
    patience: int | None


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
    # The sampler's seed is derived from the resolved seed (see study.py), never read twice.
    sampler = {k: v for k, v in settings.sampler.items() if k != "seed"}
    space = dataclasses.replace(space, settings=dataclasses.replace(settings, sampler=sampler))
    if cli.epochs is not None:
        space = space.with_fixed({"train.epochs": cli.epochs})
    options = RunOptions(
        seed=int(seed),
        n_trials=first(cli.n_trials, settings.n_trials, DEFAULT_N_TRIALS),
        patience=first(cli.patience, settings.patience),
    )
    if options.patience and settings.multi:
        raise VaeTuneError("--patience needs one objective: a Pareto front has no single best")
    return space, options
