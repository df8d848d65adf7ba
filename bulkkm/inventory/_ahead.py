"""Reading an inventory ahead: its YAML parsed in a child process while the caller goes on.

A command line run spends its first half-second importing the engine and parsing a large
inventory, one after the other, on one core. ``read_ahead`` forks a child that parses the
file's YAML while the parent imports what the run needs; the parent then checks and
resolves the data as usual (secrets and files are only ever read by the parent).

Only a clean file is taken from the child: its plain data (``marshal``: strings, numbers,
lists and mappings) when the file is UTF-8 YAML with a mapping at the top and no key written
twice. Anything else (invalid YAML, timestamps, a file the checks then refuse) is read again
by the parent the usual way, so that every problem is reported exactly as without the child,
with its line. Where a fork is not safe (not Linux, or other threads running), nothing is
read ahead.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from bulkkm.inventory._source import Source

__all__ = ["ReadAhead", "read_ahead"]

_OK = 0
_NOT_CLEAN = 3
"""The child's exit code when the parent must read the file itself."""


class ReadAhead:
    """A file's bytes as read once, and the child parsing them."""

    __slots__ = ("_fd", "_pid", "path", "raw")

    def __init__(self, path: Path, raw: bytes, pid: int, fd: int) -> None:
        """Follow the child ``pid`` that writes the parsed data to ``fd``."""
        self.path = path
        self.raw = raw
        """The file's bytes: the parent's own reading, if needed, starts from the same ones."""
        self._pid = pid
        self._fd = fd

    def source(self) -> Source | None:
        """The child's data as a ``Source`` without lines, or None: read it yourself."""
        chunks = []
        with contextlib.suppress(OSError):
            while chunk := os.read(self._fd, 1 << 20):
                chunks.append(chunk)
        status = self._reap()
        if status != _OK:
            return None
        try:
            data = marshal.loads(b"".join(chunks))  # noqa: S302 -- our own child's, on a pipe
        except (EOFError, ValueError, TypeError):
            return None
        if not isinstance(data, dict) or not data:
            return None
        return Source(data=data, sha256=hashlib.sha256(self.raw).hexdigest())

    def close(self) -> None:
        """Stop the child if it still runs; release the pipe."""
        if self._pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            self._reap()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _reap(self) -> int | None:
        """Wait for the child; its exit code (None once reaped, or if it was killed)."""
        if not self._pid:
            return None
        _, status = os.waitpid(self._pid, 0)
        self._pid = 0
        return os.waitstatus_to_exitcode(status)


@contextlib.contextmanager
def read_ahead(path: Path) -> Iterator[ReadAhead | None]:
    """A child parsing ``path`` while the block runs; None where none can be started."""
    ahead = _start(path)
    try:
        yield ahead
    finally:
        if ahead is not None:
            ahead.close()


def _start(path: Path) -> ReadAhead | None:
    """Fork the child; None for TOML, where ``fork`` is unsafe or absent, or if it fails."""
    # A fork copies one thread: with others running, a lock one of them holds would never
    # be released in the child (and Python 3.12 warns). The command line has none yet.
    if (
        not sys.platform.startswith("linux")
        or threading.active_count() > 1
        or path.suffix.lower() == ".toml"
    ):
        return None
    try:
        raw = path.read_bytes()
    except OSError:
        return None  # the parent's own reading reports it
    # Imported before the fork: the child imports nothing (no import lock to wait for).
    from bulkkm.inventory._yaml import parse_yaml  # noqa: PLC0415 -- YAML files only

    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return None
    if pid == 0:  # the child: parse, write, and leave without running the parent's exit code
        code = _NOT_CLEAN
        try:
            os.close(read_fd)
            document = parse_yaml(raw.decode("utf-8-sig"))
            if isinstance(document.data, dict) and not document.duplicates():
                view = memoryview(marshal.dumps(document.data))
                while view:
                    view = view[os.write(write_fd, view) :]
                code = _OK
        except BaseException:  # whatever it is, the parent reads the file itself
            code = _NOT_CLEAN
        finally:
            os._exit(code)
    os.close(write_fd)
    return ReadAhead(path, raw, pid, read_fd)
