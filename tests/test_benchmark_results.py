"""Benchmark records and the pages rendered from them: no run overwrites another, no two
machines share a mean, and the committed pages are what the committed records render to.

No training: records are written by hand through the real writer.
"""

from __future__ import annotations

import shutil
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import render  # noqa: E402
import results  # noqa: E402

FINISHED = datetime(2026, 12, 6, 22, 15, tzinfo=timezone.utc)
EPYC = {"cpu_model": "AMD EPYC", "cpu_flags": ["avx512_bf16", "avx512f"], "cpu_cores": 2}
XEON = {"cpu_model": "Intel Xeon", "cpu_flags": ["avx512f"], "cpu_cores": 2}


def defaults_record(
    monkeypatch: pytest.MonkeyPatch,
    machine: dict[str, Any],
    seed: int,
    accuracy: float,
    candidates: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A `defaults.py` record as the script would write it, on `machine`: one candidate, `wide`
    at `accuracy`, or `candidates` (name -> accuracy)."""
    monkeypatch.setattr(results, "machine", lambda: {**machine, "gpu": None})
    # The run started a minute before its fixed end, whatever the clock says now.
    monkeypatch.setattr(results, "process_started", lambda: FINISHED.timestamp() - 60.0)
    monkeypatch.setattr(
        results, "commit", lambda: {"sha": "1" * 40, "short": "1111111", "dirty": False}
    )
    runs = [
        {"candidate": name, "seed": seed, "val_accuracy": value, "encoder_s": 10.0, "head_s": 20.0}
        for name, value in (candidates or {"wide": accuracy}).items()
    ]
    argv = ["benchmarks/defaults.py", "--seeds", str(seed)]
    return results.record("defaults", {"runs": runs}, [seed], argv=argv, finished=FINISHED)


def test_a_second_record_never_overwrites_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = defaults_record(monkeypatch, EPYC, 0, 0.93)
    second = defaults_record(monkeypatch, EPYC, 0, 0.91)  # same script, second, commit, seed
    a = results.write(first, tmp_path)
    text = a.read_text()
    b = results.write(second, tmp_path)
    assert a != b
    assert a.name == "defaults-20261206T221500Z-1111111-seed0.json"
    assert a.read_text() == text
    assert '"val_accuracy": 0.91' in b.read_text()
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_a_record_says_where_and_how_it_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = defaults_record(monkeypatch, EPYC, 2, 0.93)
    assert doc["schema"] == results.SCHEMA and doc["source"] == "run"
    assert doc["command"] == "python benchmarks/defaults.py --seeds 2"
    assert doc["seeds"] == [2] and doc["wall_s"] == 60.0
    assert doc["machine"]["cpu_model"] == "AMD EPYC" and doc["commit"]["short"] == "1111111"


def test_runs_pool_within_a_machine_and_never_across(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for machine, seed, accuracy in ((EPYC, 0, 0.90), (EPYC, 1, 0.92), (XEON, 0, 0.50)):
        results.write(defaults_record(monkeypatch, machine, seed, accuracy), tmp_path)
    runs, transcribed = render.load(tmp_path)
    page = render.render(runs, transcribed, names=["defaults"])["defaults.md"]

    epyc, xeon = (page.split(f"## Machine: {m}")[1].split("\n## ")[0] for m in ("AMD", "Intel"))
    assert "bf16: yes" in page.split("## Machine: AMD")[1].splitlines()[0]
    epyc_mean = f"{100 * statistics.fmean([0.90, 0.92]):.2f}"
    epyc_std = f"{100 * statistics.stdev([0.90, 0.92]):.2f}"
    assert f"| wide | {epyc_mean} ± {epyc_std} | 30 ± 0 | 2 |" in epyc
    assert "seed 0: `defaults-" in epyc and "seed 1: `defaults-" in epyc
    assert "| wide | 50.00 | 30 | 1 |" in xeon
    pooled = f"{100 * statistics.fmean([0.90, 0.92, 0.50]):.2f}"
    assert pooled not in page


def test_a_trick_is_compared_with_the_default_of_the_same_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The seed moves both rows together: head-ls beats wide-finetune by 0.2 and 0.3 points on
    # the seeds both ran, though their means ± std overlap. Its third seed (a later session,
    # without wide-finetune) counts in its mean but has nothing to be paired with.
    for seed, candidates in (
        (0, {"wide-finetune": 0.920, "head-ls": 0.922}),
        (1, {"wide-finetune": 0.930, "head-ls": 0.933}),
        (2, {"head-ls": 0.950}),
    ):
        record = defaults_record(monkeypatch, EPYC, seed, 0.0, candidates)
        results.write(record, tmp_path)
    page = render.render(*render.load(tmp_path), names=["defaults"])["defaults.md"]
    header = "| validation accuracy, % | wall s | Δ vs wide-finetune, same seed | n |"
    assert header in page
    assert "| wide-finetune | 92.50 ± 0.71 | 30 ± 0 |  | 2 |" in page
    assert "| head-ls | 93.50 ± 1.41 | 30 ± 0 | +0.25 ± 0.07 (n=2) | 3 |" in page


def test_the_committed_pages_are_what_the_committed_records_render() -> None:
    assert render.main(["--check"]) == 0


def test_check_fails_on_a_page_edited_by_hand(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(render.DOCS, docs)
    page = docs / "time_to_quality.md"
    page.write_text(page.read_text().replace("8.68 ± 0.26", "8.00 ± 0.26"))
    assert render.main(["--check", "--docs", str(docs)]) == 1
    assert render.main(["--docs", str(docs)]) == 0
    assert render.main(["--check", "--docs", str(docs)]) == 0
