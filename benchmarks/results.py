"""One benchmark run, one JSON file: the record every script writes when it ends.

A record holds the machine, the commit (and whether the tree was dirty), the seeds, the exact
command line, the wall time and the script's figures, under `benchmarks/results/` with a name
no other run has (`SCRIPT-UTCSTAMP-COMMIT-seedS.json`). A file is created with `open(..., "x")`,
so an earlier run's file is never overwritten, not even by a run ending the same second.
The format is described in `benchmarks/results/README.md`; `benchmarks/render.py` reads it.

This module imports no torch and no vae_tune at import time: the renderer and the tests use it
without paying for either.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA = 1
RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parent.parent

# The CPU flags that decide which precision and kernels a figure could use.
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")


def process_started() -> float:
    """When this module was first imported (Unix time): each script imports it before torch,
    so the wall time covers the imports and the set-up. (/proc/self/stat's start time is
    counted from a boot that sandboxes report differently from /proc/uptime: on this
    project's machines it put the start 550 s in the future.)"""
    return _IMPORTED


_IMPORTED = time.time()


def cpu_info() -> dict[str, Any]:
    """CPU model and the flags in FLAGS, from /proc/cpuinfo (empty on other systems)."""
    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        elif key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return {"cpu_model": model, "cpu_flags": sorted(f for f in FLAGS if f in flags)}


def machine() -> dict[str, Any]:
    """What the figures were measured on. torch is imported here, not at module import."""
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {
        **cpu_info(),
        "cpu_cores": cores,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpus[0] if gpus else None,
        "gpu_count": len(gpus),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def commit(repo: Path = REPO) -> dict[str, Any]:
    """HEAD and whether the tree differs from it; unknown outside a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        # Untracked files count too: a new script or space file changes what ran.
        dirty = bool(git("status", "--porcelain"))
    except (OSError, subprocess.CalledProcessError):
        return {"sha": None, "short": "nocommit", "dirty": None}
    return {"sha": sha, "short": sha[:7], "dirty": dirty}


def file_name(benchmark: str, finished: datetime, short: str, seeds: Sequence[int]) -> str:
    stamp = finished.strftime("%Y%m%dT%H%M%SZ")
    seed = f"-seed{'-'.join(str(s) for s in seeds)}" if seeds else ""
    return f"{benchmark}-{stamp}-{short}{seed}"


def record(
    benchmark: str,
    figures: Mapping[str, Any],
    seeds: Sequence[int],
    argv: Sequence[str] | None = None,
    finished: datetime | None = None,
) -> dict[str, Any]:
    """The whole record of a run that ends now."""
    finished = finished or datetime.now(timezone.utc)
    started = process_started()
    argv = [sys.executable, *(sys.argv if argv is None else argv)]
    return {
        "schema": SCHEMA,
        "benchmark": benchmark,
        "source": "run",
        "started_utc": datetime.fromtimestamp(started, timezone.utc).isoformat(),
        "finished_utc": finished.isoformat(),
        "wall_s": round(finished.timestamp() - started, 3),
        "argv": argv[1:],
        "command": shlex.join(["python", *argv[1:]]),
        "cwd": os.getcwd(),
        "commit": commit(),
        "seeds": list(seeds),
        "machine": machine(),
        "figures": dict(figures),
    }


def write(doc: Mapping[str, Any], folder: Path = RESULTS) -> Path:
    """Write a record under a fresh name; never replace a file that exists."""
    folder.mkdir(parents=True, exist_ok=True)
    finished = datetime.fromisoformat(doc["finished_utc"])
    stem = file_name(doc["benchmark"], finished, doc["commit"]["short"], doc["seeds"])
    text = json.dumps(doc, indent=2, sort_keys=False) + "\n"
    for attempt in range(1, 1000):
        # "-runN", not "-N": "seed0-1-2" must keep reading as seeds 0, 1 and 2.
        path = folder / (f"{stem}.json" if attempt == 1 else f"{stem}-run{attempt}.json")
        try:
            # "x": the create fails if the name is taken, even by a run finishing right now.
            with open(path, "x") as out:
                out.write(text)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free name for {stem}.json in {folder}")


def write_run(
    benchmark: str,
    figures: Mapping[str, Any],
    seeds: Sequence[int],
    copy_to: Path | None = None,
    folder: Path = RESULTS,
) -> Path:
    """Record this run under `folder`; `copy_to` (a script's --out) gets the same text too."""
    doc = record(benchmark, figures, seeds)
    path = write(doc, folder)
    if copy_to is not None:
        # A scratch copy where the user asked for it; the record in results/ is the one kept.
        copy_to.parent.mkdir(parents=True, exist_ok=True)
        copy_to.write_text(path.read_text())
    return path
