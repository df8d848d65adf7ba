"""The one way tests run the ``bulkkm`` command: a real process, piped or on a pseudo-terminal.

Piped: ``bulkkm(...)`` runs a command to its end; ``start(...)`` and ``running(...)`` hand
back the process for a test that signals it or serves from it. On a terminal:
``on_terminal(...)`` runs a command to its end; ``terminal(...)`` gives a ``Terminal`` to type
into, signal and read as a person would (its screen emulated by pyte).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pty
import resource
import signal
import struct
import sys
import termios
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pyte

__all__ = [
    "Result",
    "Terminal",
    "bulkkm",
    "line_count",
    "on_terminal",
    "read_report",
    "running",
    "start",
    "terminal",
    "wait_for_lines",
]

TIMEOUT = 120.0
BULKKM = ("-m", "bulkkm")
"""What follows the interpreter by default: the command as a user runs it."""
COLS, ROWS = 160, 600
"""A terminal's size: wide, and tall enough that the emulated screen keeps every line."""

Env = Mapping[str, str | None]
"""Variables added to the test's environment; ``None`` unsets one."""


class Result(NamedTuple):
    """What a user sees of one command: its exit code and its two streams.

    A named tuple, not a dataclass, so that a test can also write
    ``code, out, err = await bulkkm(...)``.
    """

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        """Both streams, as one string to search."""
        return self.out + self.err


def _environment(env: Env | None) -> dict[str, str]:
    """The test's environment plus ``env``; no proxy or CA override leaks in."""
    merged = {k: v for k, v in os.environ.items() if k != "REQUESTS_CA_BUNDLE"}
    for name, value in {"COLUMNS": "120", **(env or {})}.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def _limit_file_size(size: int) -> Callable[[], None]:
    """A pre-exec hook: files the child writes cannot grow past ``size`` bytes (EFBIG)."""

    def hook() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return hook


async def start(
    *args: str,
    env: Env | None = None,
    stdin: int | None = asyncio.subprocess.DEVNULL,
    stdout: int | None = asyncio.subprocess.PIPE,
    stderr: int | None = asyncio.subprocess.PIPE,
    max_file_size: int | None = None,
    entry: Sequence[str] = BULKKM,
) -> asyncio.subprocess.Process:
    """Start ``python -m bulkkm ARGS`` with piped output; the caller waits for it.

    ``entry`` replaces ``-m bulkkm``: ``("-m", "bulkkm.simulator")`` for another entry point,
    ``("-c", CODE)`` for the CLI with something patched in. One still running when its test
    ends (a test that failed half-way) is killed then (``stop_leftovers``).
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *entry,
        *args,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=_environment(env),
        preexec_fn=None if max_file_size is None else _limit_file_size(max_file_size),
    )
    _STARTED.append(process.pid)
    return process


_STARTED: list[int] = []
"""Pids of the processes ``start`` began during the current test."""


def stop_leftovers() -> None:
    """Kill what ``start`` began and is still running: a test that failed before waiting for
    its processes would leave them (a coordinator waiting on a pause of 600 s, say), holding
    CPU and ports while the next tests run."""
    while _STARTED:
        pid = _STARTED.pop()
        try:
            running = os.waitpid(pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            continue  # ended, and reaped already: the pid may be another process's now
        if running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


@contextlib.asynccontextmanager
async def running(
    *args: str,
    env: Env | None = None,
    stdout: int | None = asyncio.subprocess.PIPE,
    stderr: int | None = asyncio.subprocess.PIPE,
    entry: Sequence[str] = BULKKM,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``start(...)`` for a long-lived process (a server): killed on the way out if still up."""
    process = await start(*args, env=env, stdout=stdout, stderr=stderr, entry=entry)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def bulkkm(
    *args: str,
    env: Env | None = None,
    max_file_size: int | None = None,
    deadline: float = TIMEOUT,
    entry: Sequence[str] = BULKKM,
) -> Result:
    """Run ``python -m bulkkm ARGS`` to its end, piped (so logs are JSON lines by default)."""
    process = await start(*args, env=env, max_file_size=max_file_size, entry=entry)
    async with asyncio.timeout(deadline):
        out, err = await process.communicate()
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


class Terminal:
    """A ``bulkkm`` process on a pseudo-terminal, and the screen a person would see."""

    def __init__(
        self, process: asyncio.subprocess.Process, leader: int, *, cols: int, rows: int
    ) -> None:
        """Read everything ``process`` writes to the terminal whose leader end is ``leader``."""
        self.process = process
        self.raw = bytearray()
        """Every byte the program wrote, escape sequences included."""
        self._leader = leader
        self._screen = pyte.Screen(cols, rows)
        self._stream = pyte.ByteStream(self._screen)
        self._closed = asyncio.Event()
        asyncio.get_running_loop().add_reader(leader, self._read)

    def _read(self) -> None:
        """Take what the program wrote; EOF (EIO on Linux) once it is gone."""
        try:
            data = os.read(self._leader, 65536)
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self._leader)
            self._closed.set()
            return
        self.raw += data
        self._stream.feed(data)

    @property
    def returncode(self) -> int | None:
        """The exit code, or None while the program runs."""
        return self.process.returncode

    def screen(self) -> list[str]:
        """The screen's non-empty lines, as a person reads them."""
        return [line.rstrip() for line in self._screen.display if line.strip()]

    async def until(self, check: Callable[[list[str]], bool]) -> None:
        """Until ``check(screen)`` holds (the caller bounds the wait)."""
        while not check(self.screen()):  # noqa: ASYNC110 -- polling a screen another process draws
            await asyncio.sleep(0.02)

    def send(self, keys: str) -> None:
        """Keys typed by the user."""
        os.write(self._leader, keys.encode())

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the program (as the terminal does for Ctrl-C)."""
        self.process.send_signal(sig)

    async def wait(self) -> int:
        """The exit code, once the program has ended and its last byte is on the screen."""
        code = await self.process.wait()
        await self._closed.wait()
        return code

    async def _stop(self) -> None:
        """Kill the program if it still runs; stop reading."""
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        asyncio.get_running_loop().remove_reader(self._leader)


@contextlib.asynccontextmanager
async def terminal(
    *args: str, env: Env | None = None, cols: int = COLS, rows: int = ROWS
) -> AsyncIterator[Terminal]:
    """``python -m bulkkm ARGS`` with stdin, stdout and stderr on a ``cols`` x ``rows`` terminal.

    Its size comes from the terminal, not from ``COLUMNS``/``LINES``, and colour is not forced
    either way. On the way out the program is killed if it still runs.
    """
    leader, follower = pty.openpty()
    try:
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        variables: dict[str, str | None] = dict.fromkeys(
            ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR")
        )
        try:
            process = await start(
                *args,
                env={**variables, "TERM": "xterm-256color", **(env or {})},
                stdin=follower,
                stdout=follower,
                stderr=follower,
            )
        finally:
            os.close(follower)  # the child holds its own: EOF comes once it has gone
        term = Terminal(process, leader, cols=cols, rows=rows)
        try:
            yield term
        finally:
            await term._stop()
    finally:
        os.close(leader)


async def on_terminal(*args: str, env: Env | None = None, deadline: float = TIMEOUT) -> Result:
    """Run ``python -m bulkkm ARGS`` on a pseudo-terminal; ``out`` is all the screen received."""
    async with terminal(*args, env=env) as term, asyncio.timeout(deadline):
        code = await term.wait()
    return Result(code, term.raw.decode(errors="replace"), "")


def line_count(path: Path) -> int:
    """How many lines a file has so far (0 before it exists)."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def wait_for_lines(path: Path, lines: int, *, deadline: float = 60.0) -> None:
    """Until ``path``, which another process writes, has ``lines`` lines."""
    async with asyncio.timeout(deadline):
        while line_count(path) < lines:  # noqa: ASYNC110 -- polling a file another process writes
            await asyncio.sleep(0.005)


def read_report(path: Path) -> list[dict[str, Any]]:
    """A report's whole lines (a torn last line left out)."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.endswith(b"}")]
