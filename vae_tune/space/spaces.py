"""Search-space files: YAML text -> a validated SearchSpace.

A file has four sections, in Optuna's own vocabulary:

    stage: ae
    study:  {metric, direction, sampler: {name, ...}, pruner: {name, ...}}
    fixed:  {train.epochs: 10, ...}                 # values every trial uses
    search: {train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}, ...}

Everything is checked on load (unknown keys, wrong types, bad ranges, values a config would
reject, sampler and pruner options) so that a mistake stops the run before any training, with a
message naming the file and the key. `SearchSpace.sample` is the only caller of `suggest_*`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from optuna.trial import BaseTrial

from vae_tune.errors import ConfigError, SpaceError, VaeTuneError
from vae_tune.models.config import TrialConfig, build_config
from vae_tune.space import own_model
from vae_tune.space.extras import Source, space_keys
from vae_tune.space.samplers import make_pruner, make_sampler
from vae_tune.space.stages import STAGES, CollapseLimits, Stage

_TOP_KEYS = {"stage", "description", "study", "fixed", "search"}
_STUDY_KEYS = {"metric", "direction", "objective", "sampler", "pruner", "min_kl", "target"}
_STUDY_KEYS |= {"min_active_units", "n_trials", "patience", "warm_start", "trial_timeout"}
_PARAM_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter, named by its dotted config key."""

    name: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: BaseTrial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def extremes(self) -> list[Any]:
        """The values whose validity proves the whole range valid."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]

    def middle(self) -> Any:
        """A typical value: the first choice, or the middle of the range (on its own scale)."""
        if self.type == "categorical":
            return self.choices[0]
        low, high = float(self.low), float(self.high)  # type: ignore[arg-type]
        value = (low * high) ** 0.5 if self.log else (low + high) / 2
        return round(value) if self.type == "int" else value


@dataclass(frozen=True)
class StudySettings:
    metrics: tuple[str, ...]  # one per objective: several make a multi-objective study
    directions: tuple[str, ...]  # minimize or maximize, one per metric
    sampler: Mapping[str, Any]
    pruner: Mapping[str, Any]
    # VAE: collapse is fewer active units than this from epoch 2 (or a KL under min_kl nats).
    min_kl: float | None = None
    n_trials: int | None = None  # finished trials wanted, unless --n-trials says otherwise
    patience: int | None = None  # stop after this many finished trials without a new best
    min_active_units: int | None = None
    warm_start: tuple[Source, ...] = ()  # studies whose best configurations start this one
    trial_timeout: float | None = None  # seconds: a trial that runs longer is stopped
    target: float | None = None  # stop starting trials once a finished trial reaches it

    @property
    def metric(self) -> str:
        """The first objective's metric: the one a single-objective study optimises."""
        return self.metrics[0]

    @property
    def direction(self) -> str:
        return self.directions[0]

    @property
    def multi(self) -> bool:
        """Several objectives: Optuna searches their Pareto front and prunes nothing."""
        return len(self.metrics) > 1

    @property
    def collapse(self) -> CollapseLimits:
        return CollapseLimits(self.min_active_units, self.min_kl)


def objective_metrics(
    stage: Stage, objective: str, where: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`elbo`, `probe`, `elbo,probe` (a VAE's; an AE's `loss`) as (metrics, directions)."""
    names = [n.strip() for n in objective.split(",") if n.strip()]
    if not stage.objectives:
        raise VaeTuneError(
            f"{where}: {objective!r}: the {stage.name} stage has no latents to probe or bound;"
            " objectives are for the ae and vae stages"
        )
    unknown = [n for n in names if n not in stage.objectives]
    if unknown or not names or len(set(names)) != len(names):
        raise VaeTuneError(
            f"{where}: unknown objective {objective!r} for {stage.name}; choose one or two of "
            f"{sorted(stage.objectives)}, comma-separated (e.g. "
            f"{','.join(stage.objectives)})"
        )
    pairs = [stage.objectives[n] for n in names]
    return tuple(m for m, _ in pairs), tuple(d for _, d in pairs)


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space and the exact text it came from."""

    stage: str
    source: str
    text: str
    settings: StudySettings
    fixed: Mapping[str, Any]
    params: tuple[Param, ...]

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        """A search-space file, validated before any training: a bad key, range or value
        raises SpaceError naming the file and the key."""
        return load_space(path)

    def sample(self, trial: BaseTrial) -> dict[str, Any]:
        """The trial's full flat config: fixed values plus one suggestion per searched key."""
        flat = dict(self.fixed)
        for param in self.params:
            flat[param.name] = param.suggest(trial)
        return flat

    def config(self, flat: Mapping[str, Any]) -> TrialConfig:
        return build_config(flat)

    def typical_config(self) -> TrialConfig:
        """The config at the middle of every searched range: what a trial costs, typically."""
        return self.config({**self.fixed, **{p.name: p.middle() for p in self.params}})

    def with_fixed(self, overrides: Mapping[str, Any]) -> SearchSpace:
        """The same space with some fixed values replaced (command-line overrides)."""
        searched = {p.name for p in self.params}
        for key in overrides:
            if key in searched:
                raise SpaceError(self.source, key, "is searched; it cannot also be fixed")
        fixed = {**self.fixed, **overrides}
        _check_config(self.source, fixed, self.params)
        return SearchSpace(self.stage, self.source, self.text, self.settings, fixed, self.params)


def load_space(path: str | Path) -> SearchSpace:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpaceError(str(path), "<file>", f"cannot read: {exc.strerror}") from exc
    return parse_space(text, str(path))


def parse_space(text: str, source: str = "<string>") -> SearchSpace:
    try:
        doc = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise SpaceError(source, "<yaml>", f"not valid YAML: {exc}") from exc
    doc = _mapping(source, "<top level>", doc)
    _no_unknown(source, "", doc, _TOP_KEYS)

    name = doc.get("stage")
    if not isinstance(name, str) or name not in STAGES:
        raise SpaceError(source, "stage", f"must be one of {sorted(STAGES)}, got {name!r}")
    stage = STAGES[name]
    settings = _parse_study(source, stage, _mapping(source, "study", doc.get("study", {})))
    fixed = dict(_mapping(source, "fixed", doc.get("fixed", {})))
    search = _mapping(source, "search", doc.get("search", {}))

    keys = own_model.space_keys(source, stage, fixed, search)
    for key in [*fixed, *search]:
        if key not in keys:
            section = "fixed" if key in fixed else "search"
            raise SpaceError(
                source, f"{section}.{key}", f"unknown key for {name}; known: {sorted(keys)}"
            )
    for key in set(fixed) & set(search):
        raise SpaceError(source, key, "is both fixed and searched")

    params = tuple(_parse_param(source, name, spec) for name, spec in search.items())
    _check_config(source, fixed, params)
    return SearchSpace(name, source, text, settings, fixed, params)


def _parse_study(source: str, stage: Stage, study: Mapping[str, Any]) -> StudySettings:
    _no_unknown(source, "study.", study, _STUDY_KEYS)
    known = stage.metrics
    metric = study.get("metric", stage.default_metric)
    if not isinstance(metric, str) or metric not in known:
        raise SpaceError(
            source,
            "study.metric",
            f"must be one of {sorted(known)} for {stage.name}, got {metric!r}",
        )
    direction = study.get("direction", known[metric])
    if direction not in ("minimize", "maximize"):
        raise SpaceError(source, "study.direction", f"must be minimize or maximize: {direction!r}")
    sampler = dict(_mapping(source, "study.sampler", study.get("sampler", {"name": "tpe"})))
    pruner = dict(_mapping(source, "study.pruner", study.get("pruner", {"name": "hyperband"})))
    # Build both once so bad names or options fail now, not after the data has loaded.
    for key, spec, factory in (
        ("study.sampler", sampler, lambda s: make_sampler(s, seed=0)),
        ("study.pruner", pruner, lambda s: make_pruner(s, max_epochs=10)),
    ):
        try:
            factory(spec)
        except (TypeError, ValueError) as exc:
            raise SpaceError(source, key, str(exc)) from exc
    min_kl = study.get("min_kl")
    if min_kl is not None and (
        stage.epoch_rule is None or not isinstance(min_kl, int | float) or min_kl < 0
    ):
        raise SpaceError(source, "study.min_kl", "is a number >= 0, for the vae stage only")
    counts: dict[str, Any] = {}
    for key in ("n_trials", "patience", "min_active_units"):
        value = study.get(key)
        whole = isinstance(value, int) and not isinstance(value, bool)
        if value is not None and (not whole or value < 1):
            raise SpaceError(source, f"study.{key}", f"must be an integer >= 1, got {value!r}")
        counts[key] = value
    if counts["min_active_units"] is not None and stage.epoch_rule is None:
        raise SpaceError(source, "study.min_active_units", "is for the vae stage only")
    metrics: tuple[str, ...] = (metric,)
    directions: tuple[str, ...] = (direction,)
    if "objective" in study:
        if "metric" in study:
            raise SpaceError(source, "study.objective", "give the objective or the metric")
        try:
            metrics, directions = objective_metrics(stage, str(study["objective"]), source)
        except VaeTuneError as exc:
            raise SpaceError(source, "study.objective", str(exc).split(": ", 1)[1]) from None
    extra = space_keys(study, source)
    return StudySettings(metrics, directions, sampler, pruner, min_kl, **counts, **extra)


def _parse_param(source: str, name: str, spec: Any) -> Param:
    spec = _mapping(source, name, spec)
    kind = spec.get("type")
    if kind not in _PARAM_KEYS:
        raise SpaceError(source, f"{name}.type", f"must be float, int or categorical: {kind!r}")
    _no_unknown(source, f"{name}.", spec, _PARAM_KEYS[kind])
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(source, f"{name}.choices", "must be a non-empty list")
        return Param(name, kind, choices=tuple(choices))

    number = int if kind == "int" else (int, float)
    for bound in ("low", "high"):
        value = spec.get(bound)
        if not isinstance(value, number) or isinstance(value, bool):
            raise SpaceError(source, f"{name}.{bound}", f"must be a number ({kind}), got {value!r}")
    low, high = spec["low"], spec["high"]
    log, step = spec.get("log", False), spec.get("step")
    if not isinstance(log, bool):
        raise SpaceError(source, f"{name}.log", f"must be true or false, got {log!r}")
    if low > high:
        raise SpaceError(source, name, f"low ({low}) is greater than high ({high})")
    if log and low <= 0:
        raise SpaceError(source, f"{name}.low", f"must be > 0 with log: true, got {low}")
    if step is not None:
        if not isinstance(step, number) or isinstance(step, bool) or step <= 0:
            raise SpaceError(source, f"{name}.step", f"must be a positive {kind}, got {step!r}")
        if log and (kind == "float" or step != 1):
            raise SpaceError(source, f"{name}.step", "cannot be combined with log: true")
    return Param(name, kind, low=low, high=high, log=log, step=step)


def _check_config(source: str, fixed: Mapping[str, Any], params: tuple[Param, ...]) -> None:
    """Every fixed value, and every searched range's ends, must make a valid config."""
    try:
        build_config(fixed)
    except ConfigError as exc:
        raise SpaceError(source, f"fixed.{exc.key}", exc.message) from exc
    for param in params:
        for value in param.extremes():
            try:
                build_config({**fixed, param.name: value})
            except ConfigError as exc:
                raise SpaceError(source, f"search.{exc.key}", f"{value!r}: {exc.message}") from exc


def _mapping(source: str, key: str, value: Any) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpaceError(source, key, f"must be a mapping, got {type(value).__name__}")
    return value


def _no_unknown(source: str, prefix: str, doc: Mapping[str, Any], allowed: set[str]) -> None:
    for key in doc:
        if key not in allowed:
            raise SpaceError(source, f"{prefix}{key}", f"unknown key; allowed: {sorted(allowed)}")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float (PyYAML's YAML 1.1 wants `1.0e-3`)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)
