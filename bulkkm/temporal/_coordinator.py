"""The coordinator: starts (or re-attaches to) a rollout workflow and writes its report.

The report is written here, as results arrive: the coordinator polls the workflow's
``progress`` query page by page and turns each cluster's events into report lines through
the same fan-out and ``ReportWriter`` as an in-process run. Re-attaching (``--attach``)
reads the report back, cuts a torn last line, and skips every line already there by its
identity (a target by cluster, SVM, server and action; a cluster line by cluster; a
verification by key manager), so nothing is written twice and the report stays one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import os
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Final

import orjson
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy

from bulkkm import codec, engine
from bulkkm.engine._run import VERSION
from bulkkm.errors import ErrorCategory, UsageError
from bulkkm.events import (
    ClusterResult,
    ErrorInfo,
    Event,
    Outcome,
    RunFinished,
    RunStarted,
    TargetsKnown,
)
from bulkkm.fanout import Fanout
from bulkkm.report import ReportWriter, read_lines
from bulkkm.request import PreparedRun, RunRequest, prepare
from bulkkm.rollout import order_clusters, split_waves
from bulkkm.temporal._wire import (
    WORKFLOW,
    WORKFLOW_QUEUE,
    ClusterDone,
    ClusterJob,
    Progress,
    RolloutInput,
    workflow_id,
)

__all__ = ["attach", "start"]

_Say = Callable[[str], None]

POLL_SECONDS: Final = 0.25
_TARGETS_NULL: Final = b'"targets":null'


async def start(request: RunRequest, address: str, namespace: str, *, say: _Say) -> int:
    """Start a rollout workflow for ``request`` and write its report; the exit code."""
    for flag, given in (
        ("--resume", request.resume is not None),
        ("--plan", request.plan is not None),
        ("--confirm-waves", request.confirm_waves),
    ):
        if given:
            raise UsageError(f"{flag} is not supported with --temporal yet")
    if request.report is None:
        raise UsageError("--temporal needs --report FILE")
    # The report is opened once every cluster is known to have a region: a refusal leaves
    # no file behind.
    prepared = prepare(dataclasses.replace(request, report=None))
    jobs = _waves(prepared)
    report = ReportWriter.create(
        Path(request.report), overwrite=request.overwrite, inputs=[prepared.inventory.path]
    )
    try:
        client = await Client.connect(address, namespace=namespace)
    except RuntimeError as exc:
        report.close()
        os.unlink(request.report)  # empty: nothing was written to it
        raise UsageError(f"--temporal {address}: cannot connect: {exc}") from None
    run_id = str(uuid.uuid4())
    tally = _Tally(command=prepared.options.command)
    fanout = Fanout([report], run_id=run_id)
    started = datetime.now(UTC)
    opts = prepared.options
    fanout.publish(
        RunStarted(
            command=opts.command.value,
            dry_run=opts.read_only,
            started_at=started,
            inventory=str(prepared.inventory.path),
            inventory_sha256=prepared.inventory.sha256,
            version=VERSION,
            resumed_from=None,
            clusters=len(prepared.inventory.clusters),
            waves=tuple(str(w) for w in opts.waves) if opts.waves else None,
            ignore_windows=opts.ignore_windows,
        )
    )
    for name in opts.skipped_clusters:
        tally.emit(fanout, ClusterResult(cluster=name, outcome=Outcome.SKIPPED, reason="limit"))
    spec = RolloutInput(
        run_id=run_id,
        request_json=orjson.dumps(request.to_json()).decode(),
        inventory_sha256=prepared.inventory.sha256,
        waves=jobs,
        rolling=opts.waves is not None,
        max_failures=opts.max_failures,
        max_fail_percent=opts.max_fail_percent,
        pause_between_waves=opts.pause_between_waves,
        heartbeat_timeout=float(os.environ.get("BULKKM_TEMPORAL_HEARTBEAT_TIMEOUT", "30")),
    )
    handle = await client.start_workflow(
        WORKFLOW,
        spec,
        id=workflow_id(run_id),
        task_queue=WORKFLOW_QUEUE,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )
    say(f"workflow {handle.id} started (re-attach with --attach {handle.id})")
    try:
        return await _follow(handle, fanout, tally, started)
    finally:
        report.close()


async def attach(
    workflow: str, report_path: Path, address: str, namespace: str, *, say: _Say
) -> int:
    """Continue the report of a running (or finished) workflow; the exit code."""
    file = _reopen(report_path)
    try:
        lines = list(read_lines(report_path))
        if not lines or lines[0].get("type") != "run":
            raise UsageError(f"--report {report_path} has no run line: not a report to continue")
        run = lines[0]
        run_id = str(run["run_id"])
        if workflow != workflow_id(run_id):
            raise UsageError(f"--report {report_path} is of workflow {workflow_id(run_id)}")
        if lines[-1].get("type") == "summary":
            say(f"{report_path} is complete already")
            return int(str(lines[-1]["exit_code"]))
        tally = _Tally(command=engine.Command(str(run["command"])))
        for line in lines[1:]:
            tally.count_line(line)
        client = await Client.connect(address, namespace=namespace)
        handle = client.get_workflow_handle(workflow)
        begun = datetime.fromisoformat(str(run["started_at"]).replace("Z", "+00:00"))
        writer = ReportWriter(file, path=report_path)
        fanout = Fanout([writer], run_id=run_id)
        say(f"attached to workflow {workflow}: {len(lines)} lines kept in {report_path}")
        code = await _follow(handle, fanout, tally, begun, report_path=report_path)
    finally:
        file.close()
    return code


@dataclasses.dataclass(slots=True)
class _Tally:
    """What the summary needs: outcome counts, failed clusters, lines already written."""

    command: engine.Command
    counts: Counter[str] = dataclasses.field(default_factory=Counter)
    clusters_failed: int = 0
    targets: int = 0
    written: set[tuple[object, ...]] = dataclasses.field(default_factory=set)

    def count_line(self, line: Mapping[str, object]) -> None:
        """Count one report line (read back on attach, or just written)."""
        self.written.add(_identity(line))
        if line.get("type") == "target":
            self.targets += 1
            self.counts[str(line["outcome"])] += 1
        elif line.get("type") == "cluster" and line.get("outcome") == Outcome.FAILED:
            self.clusters_failed += 1

    def emit(self, fanout: Fanout, event: Event) -> None:
        """Publish an event unless its line is in the report already."""
        line = codec.report_line(event)
        if line is not None and _identity(line) in self.written:
            return
        event = fanout.publish(event)
        line = codec.report_line(event)
        if line is not None:
            self.count_line(line)


def _identity(line: Mapping[str, object]) -> tuple[object, ...]:
    """What makes a line the same line in a re-attached report."""
    kind = line.get("type")
    if kind == "target":
        return (kind, line["cluster"], line["svm"], line["server"], line.get("action"))
    if kind == "verify":
        return (kind, line["cluster"], line.get("key_manager_uuid"))
    return (kind, line.get("cluster"))


async def _follow(
    handle: WorkflowHandle[object, object],
    fanout: Fanout,
    tally: _Tally,
    started: datetime,
    *,
    report_path: Path | None = None,
) -> int:
    """Poll the workflow, write each cluster's lines, then the summary; the exit code."""
    at = 0
    while True:
        page: Progress = await handle.query("progress", at, result_type=Progress)
        for done in page.done:
            for event in _events(done):
                tally.emit(fanout, event)
        at += len(page.done)
        if page.finished:
            stop = page.stop
            break
        if not page.done:
            await asyncio.sleep(POLL_SECONDS)
    targets = TargetsKnown(targets=tally.targets)
    if report_path is None:
        fanout.publish(targets)
    else:
        _fill_targets(report_path, tally.targets)
    finished = datetime.now(UTC)
    summary = RunFinished(
        finished_at=finished,
        duration_ms=round((finished - started).total_seconds() * 1000),
        counts={str(k): v for k, v in tally.counts.most_common()},
        clusters_failed=tally.clusters_failed,
        exit_code=engine.exit_code(tally.counts, tally.clusters_failed, tally.command, stop),
        aborted=stop is not None,
        stop_reason=stop,
    )
    fanout.publish(summary)
    return summary.exit_code


def _events(done: ClusterDone) -> list[Event]:
    """A finished cluster's report events (run id and sequence set again on publishing)."""
    if done.skipped is not None:
        return [
            ClusterResult(
                cluster=done.name, outcome=Outcome.SKIPPED, reason=done.skipped, wave=done.wave
            )
        ]
    if done.error is not None:
        error = ErrorInfo(category=ErrorCategory.PERMANENT, message=done.error[:500])
        return [
            ClusterResult(
                cluster=done.name,
                outcome=Outcome.FAILED,
                error=error,
                reason="worker_failed",
                wave=done.wave,
            )
        ]
    return [codec.from_json(item) for item in orjson.loads(done.events_json)]


def _waves(prepared: PreparedRun) -> list[list[ClusterJob]]:
    """The clusters in rollout order, cut into waves, each with its region."""
    opts = prepared.options
    clusters = prepared.clusters.clusters
    homeless = [c.name for c in clusters if c.region is None]
    if homeless:
        more = f" and {len(homeless) - 3} more" if len(homeless) > 3 else ""
        raise UsageError(
            f"--temporal needs a region for every cluster: {', '.join(homeless[:3])}{more} "
            "have none (set region: on defaults, a group or the cluster)"
        )
    ordered = order_clusters(clusters, opts.wave_order, lambda c: c.name)
    waves = (
        (tuple(ordered),)
        if opts.waves is None
        else split_waves(ordered, opts.waves, lambda c: c.wave)
    )
    rolling = opts.waves is not None
    return [
        [ClusterJob(name=c.name, region=str(c.region), wave=n if rolling else None) for c in wave]
        for n, wave in enumerate(waves, 1)
        if wave
    ]


def _reopen(path: Path) -> BinaryIO:
    """The report, locked, for appending; a torn last line (the killed coordinator's) cut."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"--report {path}: cannot continue it: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(f"--report {path} is being written by another bulkkm run") from None
    data = path.read_bytes()
    os.ftruncate(fd, data.rfind(b"\n") + 1)
    os.lseek(fd, 0, os.SEEK_END)
    return os.fdopen(fd, "wb", buffering=0)


def _fill_targets(path: Path, targets: int) -> None:
    """Fill the ``run`` line's target count in place, as ``ReportWriter`` does."""
    with path.open("r+b") as file:
        first = file.readline()
        at = first.find(_TARGETS_NULL)
        if at < 0:
            return
        room = len(first) - 2 - (at + len(_TARGETS_NULL))
        text = str(targets).encode()
        if len(text) <= len(b"null") + room:
            file.seek(at + len(_TARGETS_NULL) - len(b"null"))
            file.write(text.ljust(len(b"null") + room))
