"""The one way tests run the ``bulkkm`` command: a real process, piped or on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pty
import resource
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

__all__ = ["Result", "bulkkm", "line_count", "on_terminal", "read_report", "start"]

TIMEOUT = 120.0


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """What a user sees of one command: its exit code and its two streams."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        """Both streams, as one string to search."""
        return self.out + self.err


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """The test's environment plus ``env``; no proxy or CA override leaks in."""
    base = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
    return {**base, "COLUMNS": "120", **(env or {})}


def _limit_file_size(size: int) -> Callable[[], None]:
    """A pre-exec hook: files the child writes cannot grow past ``size`` bytes (EFBIG)."""

    def hook() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return hook


async def start(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdout: int | None = asyncio.subprocess.PIPE,
    stderr: int | None = asyncio.subprocess.PIPE,
    max_file_size: int | None = None,
) -> asyncio.subprocess.Process:
    """Start ``python -m bulkkm ARGS`` with piped output; the caller waits for it."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulkkm",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=_environment(env),
        preexec_fn=None if max_file_size is None else _limit_file_size(max_file_size),
    )


async def bulkkm(
    *args: str,
    env: Mapping[str, str] | None = None,
    max_file_size: int | None = None,
    deadline: float = TIMEOUT,
) -> Result:
    """Run ``python -m bulkkm ARGS`` to its end, piped (so logs are JSON lines by default)."""
    process = await start(*args, env=env, max_file_size=max_file_size)
    async with asyncio.timeout(deadline):
        out, err = await process.communicate()
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


async def on_terminal(
    *args: str, env: Mapping[str, str] | None = None, deadline: float = TIMEOUT
) -> Result:
    """Run ``python -m bulkkm ARGS`` on a pseudo-terminal; ``out`` is all the screen received."""
    leader, follower = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulkkm",
        *args,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=_environment({"TERM": "xterm-256color", **(env or {})}),
    )
    os.close(follower)
    chunks: list[bytes] = []
    loop = asyncio.get_running_loop()

    def read() -> None:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: every byte is in
            chunk = b""
        if chunk:
            chunks.append(chunk)
        else:
            loop.remove_reader(leader)
            closed.set_result(None)

    closed: asyncio.Future[None] = loop.create_future()
    loop.add_reader(leader, read)
    try:
        async with asyncio.timeout(deadline):
            await closed
            code = await process.wait()
    finally:
        loop.remove_reader(leader)
        os.close(leader)
    return Result(code, b"".join(chunks).decode(errors="replace"), "")


def line_count(path: Path) -> int:
    """How many lines a file has so far (0 before it exists)."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def read_report(path: Path) -> list[dict[str, Any]]:
    """A report's whole lines (a torn last line left out)."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.endswith(b"}")]
