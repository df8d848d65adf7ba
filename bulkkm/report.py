"""The JSON-lines report: written as results arrive, read back to resume and to summarize.

Each line goes out in one ``write`` on an unbuffered file, so a killed process leaves every
finished line whole. The ``run`` line is written first, before discovery knows how many
targets there are; its ``targets`` field is reserved as ``null`` padded with spaces (JSON
allows them) and filled in place once the count is final.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Final

import structlog

from bulkkm import codec
from bulkkm.codec import CodecError, timestamp
from bulkkm.errors import ReportError
from bulkkm.events import Event, RunStarted, TargetKey, TargetResult, TargetsKnown
from bulkkm.outputs import being_written, open_output
from bulkkm.resume import DONE, Resume

__all__ = [
    "DONE",
    "ReportWriter",
    "TargetKey",
    "load_resume",
    "read_lines",
    "timestamp",
]

log = structlog.get_logger("bulkkm")

_TARGETS_FIELD: Final = b'"targets":null'
_TARGETS_ROOM: Final = 12


class ReportWriter:
    """A subscriber that writes the report, one flushed line per event (``bulkkm.codec``).

    It is *essential*: should a write fail (a full disk), the engine stops starting new
    work rather than go on with nothing on record.
    """

    essential = True

    def __init__(
        self, file: BinaryIO, *, path: Path, resumed_from_report: Path | None = None
    ) -> None:
        """Write to ``file`` (unbuffered, opened by ``bulkkm.outputs.open_output``) at ``path``."""
        self.path = path
        self._file = file
        self._resumed_from_report = resumed_from_report
        self._targets_offset: int | None = None

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        overwrite: bool = False,
        inputs: Iterable[Path] = (),
        resumed_from_report: Path | None = None,
    ) -> ReportWriter:
        """A writer on a new report at ``path``, checked as ``open_output`` checks outputs."""
        file = open_output(path, what="--report", overwrite=overwrite, inputs=inputs)
        return cls(file, path=path, resumed_from_report=resumed_from_report)

    def __call__(self, event: Event) -> None:
        """Write the line an event makes, if it makes one."""
        match event:
            case RunStarted():
                self._write_run(event)
            case TargetsKnown():
                self._fill_targets(event.targets)
            case _:
                line = codec.report_line(event)
                if line is not None:
                    self._file.write(codec.dumps_line(line))  # one line, in one write

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def _write_run(self, event: RunStarted) -> None:
        """The ``run`` line, with room to fill in ``targets`` later."""
        earlier = self._resumed_from_report
        line = codec.dumps_line(
            codec.run_line(
                event, resumed_from_report=None if earlier is None else str(earlier.resolve())
            )
        )
        at = line.rindex(_TARGETS_FIELD)
        self._targets_offset = at + len(_TARGETS_FIELD) - len(b"null")
        self._file.write(line[:-2] + b" " * _TARGETS_ROOM + b"}\n")

    def _fill_targets(self, targets: int) -> None:
        """Write the final target count into the ``run`` line, in place."""
        if self._targets_offset is None:
            return
        text = str(targets).encode().ljust(len(b"null") + _TARGETS_ROOM)
        os.pwrite(self._file.fileno(), text, self._targets_offset)


def read_lines(path: Path) -> Iterator[dict[str, object]]:
    """Every complete line of a report; a torn last line (a killed writer) is left out."""
    for _, line in _numbered_lines(path):
        yield line


def _numbered_lines(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    """Every complete line of a report with its line number."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReportError(f"{path}: cannot read the report: {exc.strerror}") from exc
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            line = codec.loads_line(raw)
        except CodecError as exc:
            if number == len(lines) and str(exc) == "not a JSON line":  # torn by a kill
                return
            raise ReportError(f"{path}:{number}: {exc}") from None
        yield number, line


MAX_CHAIN: Final = 100
"""Reports followed back along a resume chain, at most."""


def load_resume(path: Path) -> Resume:
    """What ``--resume PATH`` starts from: every target's latest line along the report chain.

    A report written by a resumed run names the report it resumed from; lines of earlier
    reports fill in targets the newer ones lack (a resumed run killed before it wrote its
    carried lines, a cluster it could not reach). A malformed line is refused here, before
    anything is sent.
    """
    if being_written(path):
        # Its run is still going: resuming now would race it on the same clusters.
        raise ReportError(
            f"{path} is still being written by a running bulkkm: resume from it once that "
            "run has ended (Ctrl-C stops it and completes the report)"
        )
    chain: list[tuple[dict[str, object], list[TargetResult]]] = []
    seen: set[tuple[int, int]] = set()
    current: Path | None = path
    while current is not None and len(chain) < MAX_CHAIN:
        try:
            stat = current.stat()
        except OSError as exc:
            if not chain:
                raise ReportError(f"{current}: cannot read the report: {exc.strerror}") from None
            log.warning("resume_chain_broken", report=str(current), error=exc.strerror)
            break
        if (stat.st_dev, stat.st_ino) in seen:
            break
        seen.add((stat.st_dev, stat.st_ino))
        run, targets = _run_and_targets(current)
        chain.append((run, targets))
        earlier = run.get("resumed_from_report")
        current = Path(earlier) if isinstance(earlier, str) and earlier else None
    latest: dict[TargetKey, TargetResult] = {}
    for _, targets in reversed(chain):  # oldest first, so newer lines win
        for result in targets:
            latest[(result.cluster, result.svm, result.server)] = result
    run = chain[0][0]
    return Resume(
        run_id=str(run["run_id"]),
        report=str(path),
        inventory_sha256=str(run.get("inventory_sha256", "")),
        targets=latest,
    )


def _run_and_targets(path: Path) -> tuple[dict[str, object], list[TargetResult]]:
    """A report's ``run`` line and its target lines, each checked."""
    run: dict[str, object] | None = None
    targets: list[TargetResult] = []
    for number, line in _numbered_lines(path):
        if line["type"] == "run" and run is None:
            if not isinstance(line.get("run_id"), str) or not line["run_id"]:
                raise ReportError(f"{path}:{number}: the run line has no run_id")
            run = line
        elif line["type"] == "target":
            targets.append(_parse_target(path, number, line))
    if run is None:
        raise ReportError(f"{path}: no run line: not a bulkkm report")
    return run, targets


def _parse_target(path: Path, number: int, line: dict[str, object]) -> TargetResult:
    """A ``target`` line as the event that wrote it; ReportError naming the line if malformed."""
    try:
        return codec.target_from_line(line)
    except CodecError as exc:
        raise ReportError(f"{path}:{number}: malformed target line ({exc})") from None
