"""Many processes, one study record: what two of them write at the same moment both counts.

Each test loads two records of one study before either writes (as `promote` does: it loads
the study, then trains for minutes before it reads the test split), lets both write, and
checks that the storage keeps both: test reads, promotions, curves, and the stop reason.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tests.helpers import REPO, env, free_port
from tests.postgres import postgres_server
from vae_tune.project.storage import open_storage
from vae_tune.record import CurveRecord, PromotionRecord, StudyRecord

NAME = "ae-fashion-mnist"


def _two_records(location: str) -> tuple[StudyRecord, StudyRecord]:
    storage = open_storage(location, write=True)
    optuna.create_study(study_name=NAME, storage=storage)
    return StudyRecord.load(NAME, storage), StudyRecord.load(NAME, open_storage(location))


def _promotion(run_id: str) -> PromotionRecord:
    return PromotionRecord(run_id, "vae-tune-fashion-mnist-ae", "1", {"test_loss": 0.01})


def _both_count(location: str) -> None:
    first, second = _two_records(location)
    assert first.record_test_read(0, "promote", "promotion") == 1
    # The second was loaded before the first wrote: it must count the first's read too.
    assert second.record_test_read(1, "curve", "curve") == 2
    first.record_promotion(0, _promotion("run-a"))
    second.record_promotion(1, _promotion("run-b"))
    first.record_curve(0, CurveRecord("run-c", "frozen", [], 1, 1))
    second.record_curve(1, CurveRecord("run-d", "frozen", [], 1, 1))
    stored = StudyRecord.load(NAME, open_storage(location))
    assert [(r.trial, r.command) for r in stored.test_reads] == [(0, "promote"), (1, "curve")]
    assert {n: p.run_id for n, p in stored.promotions.items()} == {0: "run-a", 1: "run-b"}
    assert sorted(stored.curves) == [0, 1]


def test_two_records_loaded_before_either_writes_both_count_on_the_journal(
    tmp_path: Path,
) -> None:
    _both_count(str(tmp_path / "optuna.journal"))


@pytest.mark.slow
def test_two_records_loaded_before_either_writes_both_count_on_postgres() -> None:
    with postgres_server(free_port()) as url:
        _both_count(url)


def test_a_resumption_clears_only_the_stops_it_has_seen(tmp_path: Path) -> None:
    """A process that resumes a stopped study clears the stops it has seen; a stop written
    after that, by any process, at the same trial count too, stands."""
    first, second = _two_records(str(tmp_path / "optuna.journal"))
    first.set_stop_reason("patience: no new best")
    assert second.refreshed().stop_reason == "patience: no new best"
    second.set_stop_reason(None)  # a second session runs trials again
    assert first.refreshed().stop_reason is None
    first.set_stop_reason("budget: 2 min left")  # written after the resumption: it stands
    assert second.refreshed().stop_reason == "budget: 2 min left"
    second.live.add_trial(optuna.trial.create_trial(value=1.0))
    second.set_stop_reason("patience: no new best in 1")  # after more trials: the latest
    first.set_stop_reason(None)
    first.live.add_trial(optuna.trial.create_trial(value=0.5))
    assert first.refreshed().stop_reason is None


WRITER = """
import sys, time
from vae_tune.project.storage import open_storage
from vae_tune.record import StudyRecord
record = StudyRecord.load(sys.argv[1], open_storage(sys.argv[2]))
print("loaded", flush=True)
while time.time() < float(sys.argv[3]):  # both write in the same instant
    time.sleep(0.001)
print(record.record_test_read(int(sys.argv[4]), "promote", "promotion"), flush=True)
"""


@pytest.mark.slow
def test_two_processes_started_in_the_same_second_both_count_their_reads(
    tmp_path: Path,
) -> None:
    journal = str(tmp_path / "optuna.journal")
    optuna.create_study(study_name=NAME, storage=open_storage(journal, write=True))
    at = time.time() + 8  # time enough for both to import torch and load the study
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, NAME, journal, str(at), str(trial)],
            cwd=REPO,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for trial in (0, 1)
    ]
    outputs = [w.communicate(timeout=120)[0] for w in writers]
    assert all(w.returncode == 0 for w in writers), outputs
    assert all(o.startswith("loaded") for o in outputs), "both loaded before the instant"
    stored = StudyRecord.load(NAME, open_storage(journal))
    assert sorted(r.trial for r in stored.test_reads) == [0, 1]


def test_a_study_written_before_keys_of_its_own_keeps_its_reads_and_promotions(
    tmp_path: Path,
) -> None:
    """0.3 kept one list of reads, one dict of promotions and one stop reason: they still
    count, and new entries add to them."""
    study = optuna.create_study(
        study_name=NAME, storage=open_storage(str(tmp_path / "optuna.journal"), write=True)
    )
    read = {"when": "2026-01-01T00:00:00+00:00", "trial": 0, "command": "promote"}
    study.set_user_attr("test_reads", [{**read, "why": "promotion", "host": "old"}])
    study.set_user_attr("promotions", {"0": vars(_promotion("run-old"))})
    study.set_user_attr("stop_reason", "patience: no new best")
    record = StudyRecord(study)
    assert record.stop_reason == "patience: no new best"
    assert record.record_test_read(1, "promote", "promotion") == 2
    record.record_promotion(1, _promotion("run-new"))
    assert {n: p.run_id for n, p in record.promotions.items()} == {0: "run-old", 1: "run-new"}
    record.set_stop_reason(None)
    assert record.stop_reason is None
