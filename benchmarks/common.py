"""Helpers the benchmark scripts share: medians with their spread, JSON results, tables,
search spaces with every value fixed, and peak memory.

Benchmarks are scripts, not tests: each prints a table and, when it ends, writes one record of
its run under `benchmarks/results/` (results.py: machine, commit, seeds, command, wall time,
figures; a new file per run). Every speed figure is a ratio against a reference measured in the
same run.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from results import write_run
from rich.console import Console
from rich.table import Table

from vae_tune.data.splits import default_data_dir
from vae_tune.logs import quiet_libraries

REPO = Path(__file__).resolve().parent.parent


def quiet() -> None:
    """Keep the libraries' info lines out of the table."""
    quiet_libraries()


def progress(line: str) -> None:
    """A line of progress on stderr, at once: stdout is for the table and the JSON."""
    print(line, file=sys.stderr, flush=True)


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of repeated measurements, and the runs themselves."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": list(values),
    }


def show(value: Mapping[str, Any], digits: int = 3) -> str:
    """`median [min, max]` of a `spread`."""

    def f(x: float) -> str:
        return f"{x:.{digits}g}"

    if len(value["runs"]) == 1:
        return f(value["median"])
    return f"{f(value['median'])} [{f(value['min'])}, {f(value['max'])}]"


def write_result(
    name: str, result: Mapping[str, Any], out: Path | None = None, *, seeds: Sequence[int]
) -> Path:
    """Record this run under benchmarks/results/ (a new file, never an earlier run's); `out`,
    a script's --out, gets a copy of the same record."""
    return write_run(name, result, seeds, copy_to=out)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column != columns[0] else "left")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    Console(width=140).print(table)


def fixed_space(stage: str, values: Mapping[str, Any], folder: Path, **study: Any) -> Path:
    """A search-space file that searches nothing: every trial trains the same config."""
    metric = {"ae": "val_loss", "vae": "val_neg_elbo", "mlp": "val_accuracy"}[stage]
    doc = {
        "stage": stage,
        "study": {"metric": metric, "pruner": {"name": "none"}, **study},
        "fixed": dict(values),
    }
    path = folder / f"{stage}-fixed.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (or of its finished children), in MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def run_cli(
    args: Sequence[str],
    root: Path,
    log: Path | None = None,
    entry: Sequence[str] = ("-m", "vae_tune.cli"),
) -> dict[str, Any]:
    """`vae-tune ARGS` in the project folder `root`: wall time, peak memory, exit code.
    `entry`: what Python runs in place of `-m vae_tune.cli` (a script that wraps it).

    The peak is the resident set of the largest process of the command's tree (its workers
    included), as the kernel reports it to `wait4`.
    """
    command = [sys.executable, *entry, *args]
    # The project folder is elsewhere: a relative data path must still point at the data.
    env = {**os.environ, "VAE_TUNE_DATA": str(default_data_dir().resolve())}
    log = log or root / "output.log"
    started = time.perf_counter()
    with open(log, "a") as out:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise RuntimeError(f"vae-tune {' '.join(args)} exited {process.returncode}:\n{tail}")
    return {
        "command": "vae-tune " + " ".join(args),
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
    }
