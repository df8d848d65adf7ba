"""Logging: what other libraries log comes out as bulkkm's own lines, scrubbed."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from bulkkm.logs import configure_logging
from bulkkm.secret import remember


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The root logger as it was, back after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers, root.level = handlers, level


@pytest.mark.usefixtures("root_logging")
def test_standard_library_records_are_json_lines_without_secrets() -> None:
    """A library's warning (the Temporal SDK's, asyncio's) in a JSON log: a JSON line named
    after its logger, its traceback in it, a secret it quotes masked; INFO only with -vv."""
    stream = io.StringIO()
    configure_logging(fmt="json", verbosity=0, stream=stream)
    remember("hunter2-not-a-real-one")
    logging.getLogger("temporalio.activity").warning("failed with %s", "hunter2-not-a-real-one")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("asyncio").exception("Exception in callback")
    logging.getLogger("aiohttp.access").info("GET / 200")
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["event"], line["level"]) for line in lines] == [
        ("temporalio.activity", "warning"),
        ("asyncio", "error"),
    ]
    assert "hunter2" not in stream.getvalue()
    assert "RuntimeError: boom" in lines[1]["exception"]
    verbose = io.StringIO()
    configure_logging(fmt="json", verbosity=2, stream=verbose)
    logging.getLogger("aiohttp.access").info("GET / 200")
    assert orjson.loads(verbose.getvalue())["message"] == "GET / 200"
