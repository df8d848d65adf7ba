"""A run's events on disk: one JSON line per engine event, appended as the run emits them.

The journal is a sync subscriber of the run's fan-out, like the report: one ``write`` per
event, on an unbuffered file, so a killed service leaves every line but perhaps the last
whole. Event streams (``_sse``) read the file, each at its own pace, so a slow or late client
costs the run nothing and replays from the start work, after a restart too. An apply's two
engine runs (the plan, then the approved change) append to one journal; a line's number
(from 1) is its id in the stream, which for a one-phase run is the event's ``seq``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Final

from bulkkm import codec
from bulkkm.events import Event

__all__ = ["Journal", "JournalReader"]

CHUNK: Final = 1 << 16


class Journal:
    """Appends a run's events to its file and says so to ``on_append``."""

    def __init__(self, file: BinaryIO, lines: int, on_append: Callable[[], None]) -> None:
        """Append to ``file``, which holds ``lines`` whole lines already."""
        self._file = file
        self.lines = lines
        self._on_append = on_append

    @classmethod
    def open(cls, path: Path, on_append: Callable[[], None]) -> Journal:
        """The journal at ``path``, created or continued (a torn last line cut off)."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        file = os.fdopen(fd, "r+b", buffering=0)
        data = file.read()
        whole = data.rfind(b"\n") + 1
        if whole != len(data):  # a line torn by a kill: never append after it
            file.truncate(whole)
        file.seek(whole)
        return cls(file, data.count(b"\n"), on_append)

    def __call__(self, event: Event) -> None:
        """Write one event's line."""
        self._file.write(codec.encode(event) + b"\n")
        self.lines += 1
        self._on_append()

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class JournalReader:
    """Reads a journal's whole lines from where it stopped last, with their numbers."""

    def __init__(self, path: Path) -> None:
        """Read ``path`` (absent until the run's first event)."""
        self._path = path
        self._file: BinaryIO | None = None
        self._rest = b""
        self.lines = 0
        """Whole lines read so far: the number of the last one."""

    def read(self) -> Iterator[tuple[int, bytes]]:
        """The whole lines written since the last call, numbered."""
        if self._file is None:
            try:
                self._file = self._path.open("rb", buffering=0)
            except FileNotFoundError:
                return
        while chunk := self._file.read(CHUNK):
            data = self._rest + chunk
            end = data.rfind(b"\n") + 1
            self._rest = data[end:]
            for line in data[:end].splitlines():
                self.lines += 1
                yield self.lines, line

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()


def line_count(path: Path) -> int:
    """How many whole lines a journal holds."""
    try:
        with path.open("rb") as file:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(CHUNK), b""))
    except FileNotFoundError:
        return 0
