"""Fixtures and markers shared by the tests; helpers live in `tests/helpers.py`."""

from __future__ import annotations

import os
from pathlib import Path

# Tables are rendered wide enough not to fold (rich reads this once, at import).
os.environ.setdefault("COLUMNS", "250")

import pytest

from tests.helpers import data_dir


@pytest.fixture(scope="session")
def real_data() -> Path:
    return data_dir()
