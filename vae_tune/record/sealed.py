"""The sealed test split: the one way any command reads it.

A read is written on the study (`test_reads`: when, which trial, which command, why) before the
files are opened, so no crash, not even a SIGKILL, can hide it; the command then says how many
reads the study's test split has had, and every figure from it is judged by that count.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from vae_tune.data.splits import load_test
from vae_tune.record import StudyRecord

Log = Callable[[str], None]


def read_test_split(
    record: StudyRecord,
    trial: int,
    command: str,
    why: str,
    *,
    data_dir: Path | None,
    device: torch.device,
    log: Log,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The study's test images and labels, and how many reads the study has had with this one."""
    reads = record.record_test_read(trial, command, why)
    earlier = f"{reads - 1} before this one" if reads > 1 else "the first"
    log(
        f"reading the test split of {record.study.study_name} ({why} of trial {trial}): "
        f"read {reads}, {earlier}"
    )
    settings = record.settings
    images, labels = load_test(
        settings.dataset, data_dir, device=device, holdout=settings.holdout or None
    )
    return images, labels, reads
