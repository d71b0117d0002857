"""A study's warm start, trial time-out and target (`--warm-start`, `--trial-timeout`,
`--target`, or `study.warm_start`, `study.trial_timeout`, `study.target` in a space file):
parsed and checked here, once, and shown the same way in `vae-tune status`, on the study's
MLflow parent run and in its optuna-dashboard note.

A warm-start source is `NAME` (a study in this project's storage) or `STORAGE::NAME` (a journal
file or storage URL, then the study's name: `../old/studies/optuna.journal::ae-mnist`,
`postgresql://host/db::ae-fashion-mnist`). A duration is seconds, or `90s`, `10m`, `1.5h`,
`1h30m`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vae_tune.errors import SpaceError, VaeTuneError

SEPARATOR = "::"  # between a source's storage and its study name (no URL holds two colons)


@dataclass(frozen=True)
class Source:
    """A study whose best configurations start this one. `location` None: this storage, not
    yet located (`located` fills it in); `here`: in this project's storage."""

    name: str
    location: str | None = None
    here: bool = False

    def __str__(self) -> str:
        if self.location is None or self.here:
            return self.name
        shown = re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", self.location)  # no password
        return f"{shown}{SEPARATOR}{self.name}"


@dataclass(frozen=True)
class Extras:
    """The three options, resolved (command line > space file > none)."""

    warm_start: tuple[Source, ...] = ()
    trial_timeout: float | None = None  # seconds
    target: float | None = None  # on the study's metric, in its direction

    def shown(self) -> dict[str, str]:
        """The options given, as text: the same words in status, MLflow and the note."""
        shown = {}
        if self.warm_start:
            shown["warm_start"] = ", ".join(str(s) for s in self.warm_start)
        if self.trial_timeout is not None:
            shown["trial_timeout"] = f"{self.trial_timeout:g} s"
        if self.target is not None:
            shown["target"] = f"{self.target:g}"
        return shown


def parse_sources(value: Any, where: str) -> tuple[Source, ...]:
    """`a,b` or a list of `NAME` / `STORAGE::NAME`; `where` names the option or key."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise VaeTuneError(f"{where}: give study names, comma-separated or a list: {value!r}")
    sources = []
    for item in (i.strip() for i in items):
        location, _, name = item.rpartition(SEPARATOR)
        if not name.strip() or (SEPARATOR in item and not location.strip()):
            raise VaeTuneError(f"{where}: {item!r}: give NAME or STORAGE{SEPARATOR}NAME")
        sources.append(Source(name.strip(), location.strip() or None))
    if not sources:
        raise VaeTuneError(f"{where}: name at least one study")
    return tuple(sources)


def parse_duration(value: Any, where: str) -> float:
    """Seconds from a number of seconds or `90s`, `10m`, `1.5h`, `1h30m`."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number or (isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value)):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
        if not parts or "".join(f"{n}{u}" for n, u in parts) != text:
            raise VaeTuneError(
                f"{where}: {value!r}: give seconds or a duration such as 90s, 10m, 1.5h, 1h30m"
            )
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise VaeTuneError(f"{where}: {value!r}: must be more than zero")
    return seconds


def parse_target(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise VaeTuneError(f"{where}: must be a number, got {value!r}")
    try:
        target = float(value)
    except ValueError:
        raise VaeTuneError(f"{where}: must be a number, got {value!r}") from None
    if not math.isfinite(target):
        raise VaeTuneError(f"{where}: must be a finite number, got {value!r}")
    return target


def same_storage(location: str | None, here: str) -> bool:
    """Whether a source's storage is this project's (`here`): the same URL or journal file."""
    if location is None:
        return True
    if "://" in location or "://" in here:
        return location.rstrip("/") == here.rstrip("/")
    return Path(location).resolve() == Path(here).resolve()


def located(sources: tuple[Source, ...], study_name: str, here: str) -> tuple[Source, ...]:
    """The sources with their storage named (`here`: this project's), none of them this
    study: a study never warm-starts from itself."""
    found = []
    for source in sources:
        local = same_storage(source.location, here)
        if source.name == study_name and local:
            raise VaeTuneError(
                f"warm start from {source}: that is this study; a study never warm-starts "
                "from itself (resume it instead)"
            )
        found.append(Source(source.name, source.location or here, local))
    return tuple(found)


def space_keys(study: Any, source: str) -> dict[str, Any]:
    """A space file's `study.warm_start`, `study.trial_timeout` and `study.target`, checked:
    a bad one raises SpaceError naming the file and the key."""
    parsers = {"warm_start": parse_sources, "trial_timeout": parse_duration, "target": parse_target}
    found: dict[str, Any] = {}
    for key, parse in parsers.items():
        if study.get(key) is not None:
            try:
                found[key] = parse(study[key], "")
            except VaeTuneError as exc:
                raise SpaceError(source, f"study.{key}", str(exc).removeprefix(": ")) from None
    return found
