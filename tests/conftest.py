"""What every test gets: no process it started outlives it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cli import stop_leftovers


@pytest.fixture(autouse=True)
def _no_process_left() -> Iterator[None]:
    """After each test, kill the ``bulkkm`` processes it started and left running."""
    yield
    stop_leftovers()
