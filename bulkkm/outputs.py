"""Files a run writes (the report, a saved plan): checked and opened before anything is sent.

An output is refused, in one line and before any request, when its folder is missing, when
it is a folder, a symbolic link or one of the run's own inputs (the inventory, the report it
resumes from, the plan it executes; compared by device and inode, so another name for the
same file is caught), when it already exists and ``--overwrite`` was not given, when it is
not a regular file (a device, a pipe: a report is read back and updated in place), and when
another bulkkm run holds its lock. It is created mode 0600, never through a symbolic link.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from bulkkm.errors import UsageError

__all__ = ["being_written", "open_output"]


def open_output(path: Path, *, what: str, overwrite: bool, inputs: Iterable[Path] = ()) -> BinaryIO:
    """``path`` opened for writing (unbuffered, locked, empty), or UsageError saying why not."""
    if path.is_dir():
        raise UsageError(f"{what} {path} is a directory; name a file")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"{what} {path}: the folder {folder} does not exist")
    for source in inputs:
        if _same_file(path, source):
            raise UsageError(f"{what} {path} is the same file as {source}; it would be overwritten")
    # O_NONBLOCK: a named pipe without a reader would hold the open forever.
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    if not overwrite:
        flags |= os.O_EXCL
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        hint = "is a symbolic link" if path.is_symlink() else "exists"
        raise UsageError(
            f"{what} {path} {hint}; choose another name (or --overwrite to replace a file)"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(f"{what} {path} is a symbolic link; refusing to follow it") from None
        if exc.errno == errno.ENXIO:  # a named pipe nobody reads
            raise UsageError(f"{what} {path} is not a regular file (a device or a pipe)") from None
        raise UsageError(f"{what} {path}: cannot write: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"{what} {path} is not a regular file (a device or a pipe)")
    os.set_blocking(fd, True)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(f"{what} {path} is being written by another bulkkm run") from None
    # Only once the lock is ours: truncating first would cut a report another run writes.
    os.ftruncate(fd, 0)
    os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
    return os.fdopen(fd, "wb", buffering=0)


def being_written(path: Path) -> bool:
    """Whether a running bulkkm holds ``path`` open as its output (``open_output``'s lock)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False  # the reader says what is wrong with it
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # a shared lock taken goes with the descriptor
    return False


def _same_file(a: Path, b: Path) -> bool:
    """Whether two names lead to one file (false when either does not exist)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
