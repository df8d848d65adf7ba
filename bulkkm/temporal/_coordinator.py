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
import contextlib
import dataclasses
import fcntl
import itertools
import os
import signal
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Final

import orjson
import structlog
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowHandle, WorkflowQueryFailedError
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from bulkkm import codec, engine, interrupts
from bulkkm.engine._run import VERSION
from bulkkm.errors import ErrorCategory, UsageError
from bulkkm.events import (
    ClusterDiscovered,
    ClusterResult,
    ErrorInfo,
    Event,
    Outcome,
    RunFinished,
    RunStarted,
    TargetResult,
    TargetsKnown,
    TemporalRun,
    WaveFinished,
)
from bulkkm.fanout import Fanout
from bulkkm.plan import ApprovedPlan, Operation
from bulkkm.report import ReportWriter, load_resume, read_lines
from bulkkm.request import ConfirmWave, PreparedRun, RunRequest, prepare
from bulkkm.resume import Resume
from bulkkm.rollout import order_clusters, split_waves
from bulkkm.temporal._view import Display, leave
from bulkkm.temporal._wire import (
    HALT,
    PROCEED,
    SIDE,
    SIDE_PART,
    WORKFLOW,
    WORKFLOW_QUEUE,
    Answer,
    ChunkDone,
    ClusterJob,
    Progress,
    RolloutInput,
    pack_waves,
    task_queue,
    unpack,
    workflow_id,
)

__all__ = ["attach", "start"]

_Say = Callable[[str], None]
log = structlog.get_logger("bulkkm")

POLL_SECONDS: Final = 0.25
QUERY_PATIENCE: Final = 10
"""Failed progress queries in a row after which the operator is told, and told again (they
go on: 10 are about 40 seconds)."""
_AGAIN: Final = frozenset(
    {
        RPCStatusCode.CANCELLED,  # the SDK's own deadline ("Timeout expired")
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.RESOURCE_EXHAUSTED,
    }
)
EXIT_INTERRUPTED: Final = 130
_TARGETS_NULL: Final = b'"targets":null'


async def start(
    request: RunRequest,
    address: str,
    namespace: str,
    *,
    say: _Say,
    confirm: ConfirmWave | None = None,
) -> int:
    """Start a rollout workflow for ``request`` and write its report; the exit code.

    ``confirm`` is asked after each wave but the last when the request says
    ``confirm_waves`` (the workflow waits for the answer).
    """
    if request.report is None:
        raise UsageError("--temporal needs --report FILE")
    # The report is opened once every cluster is known to have a region: a refusal leaves
    # no file behind.
    prepared = prepare(dataclasses.replace(request, report=None), confirm_wave=confirm)
    jobs = _waves(prepared)
    opts = prepared.options
    parts = _side_parts(opts.approved)
    report = ReportWriter.create(
        Path(request.report),
        overwrite=request.overwrite,
        inputs=[prepared.inventory.path, *(Path(p) for p in (request.resume, request.plan) if p)],
        resumed_from_report=None if request.resume is None else Path(request.resume),
    )
    try:
        client = await Client.connect(address, namespace=namespace)
    except RuntimeError as exc:
        report.close()
        os.unlink(request.report)  # empty: nothing was written to it
        raise UsageError(f"--temporal {address}: cannot connect: {exc}") from None
    run_id = str(uuid.uuid4())
    tally = _Tally(command=opts.command, resume=opts.resume)
    display = Display(say)
    fanout = Fanout([report, *display.subscribers], run_id=run_id)
    started = datetime.now(UTC)
    fanout.publish(
        RunStarted(
            command=opts.command.value,
            dry_run=opts.read_only,
            started_at=started,
            inventory=str(prepared.inventory.path),
            inventory_sha256=prepared.inventory.sha256,
            version=VERSION,
            resumed_from=opts.resume.run_id if opts.resume else None,
            clusters=len(prepared.inventory.clusters),
            waves=tuple(str(w) for w in opts.waves) if opts.waves else None,
            ignore_windows=opts.ignore_windows,
            plan_id=opts.approved.plan_id if opts.approved else None,
            temporal=TemporalRun(
                address=address, namespace=namespace, workflow_id=workflow_id(run_id)
            ),
            options=opts.flags,
        )
    )
    for name in opts.skipped_clusters:
        tally.leave_out(fanout, name)
    spec = RolloutInput(
        run_id=run_id,
        request_json=orjson.dumps(request.to_json()).decode(),
        inventory_sha256=prepared.inventory.sha256,
        jobs=pack_waves(jobs),
        rolling=opts.waves is not None,
        max_failures=opts.max_failures,
        max_fail_percent=opts.max_fail_percent,
        pause_between_waves=opts.pause_between_waves,
        heartbeat_timeout=float(os.environ.get("BULKKM_TEMPORAL_HEARTBEAT_TIMEOUT", "30")),
        side_parts=len(parts),
        confirm_waves=opts.confirm_wave is not None,
        plan_id=opts.approved.plan_id if opts.approved else None,
    )
    handle = await client.start_workflow(
        WORKFLOW,
        spec,
        id=workflow_id(run_id),
        task_queue=WORKFLOW_QUEUE,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        start_signal=SIDE if parts else None,
        start_signal_args=parts[:1],
    )
    for part in parts[1:]:
        await handle.signal(SIDE, part)
    say(f"workflow {handle.id} started (re-attach with --attach {handle.id})")
    for line in await _unpolled(client, namespace, jobs):
        log.warning("no_worker", note=line)
    try:
        async with display:
            code = await _follow(handle, fanout, tally, started, confirm=confirm, display=display)
    finally:
        report.close()
    display.summary(Path(request.report), retried=tally.retried)
    return code


async def _unpolled(client: Client, namespace: str, jobs: list[list[ClusterJob]]) -> list[str]:
    """What no worker polls for (a region's clusters, the workflow): they wait until one does.

    Temporal keeps the work queued, so a worker started later picks it up; the operator
    should know why nothing moves. Pollers seen in the last minutes count.
    """
    regions = Counter(job.region for wave in jobs for job in wave)
    queues = [(WORKFLOW_QUEUE, TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, 0)] + [
        (task_queue(region), TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY, count)
        for region, count in sorted(regions.items())
    ]
    lines = []
    for name, kind, clusters in queues:
        request = DescribeTaskQueueRequest(
            namespace=namespace, task_queue=TaskQueue(name=name), task_queue_type=kind
        )
        answer = await client.workflow_service.describe_task_queue(request)
        if not answer.pollers:
            what = f"its clusters ({clusters}) wait" if clusters else "the rollout waits"
            lines.append(f"no worker polls task queue {name}: {what} until one does")
    return lines


def _side_parts(approved: ApprovedPlan | None) -> list[dict[str, str]]:
    """A saved plan's approvals by cluster (JSON each), cut into parts of one signal each."""
    if approved is None:
        return []
    parts: list[dict[str, str]] = [{}]
    size = 0
    for name, key_managers in approved.clusters.items():
        text = orjson.dumps(
            {uuid: dataclasses.asdict(km) for uuid, km in key_managers.items()}
        ).decode()
        if size + len(text) > SIDE_PART and parts[-1]:
            parts.append({})
            size = 0
        parts[-1][name] = text
        size += len(text) + len(name)
    return parts


async def attach(
    workflow: str,
    report_path: Path,
    address: str,
    namespace: str,
    *,
    say: _Say,
    confirm: ConfirmWave | None = None,
) -> int:
    """Continue the report of a running (or finished) workflow; the exit code.

    ``confirm`` answers the workflow when it waits after a wave (``--confirm-waves``).
    """
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
        resumed = run.get("resumed_from_report")
        resume = load_resume(Path(resumed)) if isinstance(resumed, str) and resumed else None
        tally = _Tally(command=engine.Command(str(run["command"])), resume=resume)
        for line in lines[1:]:
            tally.count_line(line)
        client = await Client.connect(address, namespace=namespace)
        handle = client.get_workflow_handle(workflow)
        begun = datetime.fromisoformat(str(run["started_at"]).replace("Z", "+00:00"))
        writer = ReportWriter(file, path=report_path)
        display = Display(say)
        display.view.command, display.view.clusters = str(run["command"]), _int(run["clusters"])
        for line in lines[1:]:  # what the report holds already: done before this attach
            if line.get("type") == "target":
                display.view(codec.target_from_line(line))
            elif line.get("type") == "cluster":
                display.view(
                    ClusterResult(
                        cluster=str(line["cluster"]), outcome=Outcome(str(line["outcome"]))
                    )
                )
        fanout = Fanout([writer, *display.subscribers], run_id=run_id)
        say(f"attached to workflow {workflow}: {len(lines)} lines kept in {report_path}")
        async with display:
            code = await _follow(
                handle,
                fanout,
                tally,
                begun,
                report_path=report_path,
                confirm=confirm,
                display=display,
            )
    finally:
        file.close()
    display.summary(report_path, retried=tally.retried)
    return code


def _int(value: object) -> int:
    """A count read back from a report line (0 if it is not one)."""
    return value if isinstance(value, int) else 0


@dataclasses.dataclass(slots=True)
class _Tally:
    """What the summary needs: outcome counts, failed clusters, lines already written."""

    command: engine.Command
    resume: Resume | None = None
    """The report a ``--resume`` run continues: its lines are carried where confirmed."""
    counts: Counter[str] = dataclasses.field(default_factory=Counter)
    clusters_failed: int = 0
    targets: int = 0
    written: set[tuple[object, ...]] = dataclasses.field(default_factory=set)
    waves: dict[int, Counter[str]] = dataclasses.field(default_factory=dict)
    """Outcome counts per wave (for ``--confirm-waves``); ``failed`` counts failed clusters."""
    retried: Counter[str] = dataclasses.field(default_factory=Counter)
    """Requests the workers retried, by ``category code`` (every chunk's, attached or not)."""

    def count_line(self, line: Mapping[str, object]) -> None:
        """Count one report line (read back on attach, or just written)."""
        self.written.add(_identity(line))
        wave = line.get("wave")
        counts = self.waves.setdefault(wave, Counter()) if isinstance(wave, int) else Counter()
        if line.get("type") == "target":
            self.targets += 1
            self.counts[str(line["outcome"])] += 1
            counts[str(line["outcome"])] += 1
        elif line.get("type") == "cluster" and line.get("outcome") == Outcome.FAILED:
            self.clusters_failed += 1
            counts[Outcome.FAILED] += 1

    def emit(self, fanout: Fanout, event: Event) -> None:
        """Publish an event unless its line is in the report already."""
        if isinstance(event, TargetResult) and self.resume is not None:
            event = _carried(self.resume, event)
        line = codec.report_line(event)
        if line is not None and _identity(line) in self.written:
            return
        event = fanout.publish(event)
        line = codec.report_line(event)
        if line is not None:
            self.count_line(line)

    def leave_out(self, fanout: Fanout, cluster: str) -> None:
        """A cluster outside ``--limit`` (or the plan): its resumed lines, else ``skipped``.

        As in-process: carried unverified, so the newest report of a resume chain still holds
        every target's last known outcome.
        """
        carried = self.resume.of_cluster(cluster) if self.resume is not None else ()
        for old in carried:
            self.emit(fanout, dataclasses.replace(old, carried_over=True))
        if not carried:
            self.emit(
                fanout, ClusterResult(cluster=cluster, outcome=Outcome.SKIPPED, reason="limit")
            )


def _carried(resume: Resume, event: TargetResult) -> TargetResult:
    """The resumed report's line for a target the cluster shows done now, else the event.

    The worker runs without the old report; a target it found already done at discovery
    (``present`` for an addition, ``absent`` for a removal, nothing sent: no attempt) is
    what the in-process engine carries over (``Resume.carried``): the same rule, here.
    """
    if event.attempts:
        return event
    removal = event.action is Operation.REMOVE
    old = resume.confirmed(
        (event.cluster, event.svm, event.server),
        event.key_manager_uuid,
        Operation.REMOVE if removal else Operation.ADD,
        done_now=event.outcome is (Outcome.ABSENT if removal else Outcome.PRESENT),
    )
    return event if old is None else dataclasses.replace(old, carried_over=True, wave=event.wave)


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
    display: Display,
    report_path: Path | None = None,
    confirm: ConfirmWave | None = None,
) -> int:
    """Poll the workflow, write each cluster's lines, then the summary; the exit code.

    The first SIGINT or SIGTERM asks the workflow to start no new cluster and waits for
    those in flight (exit 130, as in-process); a second leaves at once, the report cut
    (``--attach`` continues it).
    """
    interrupted = asyncio.Event()
    with _interrupts(interrupted, handle.id):
        at = 0
        asked: set[int] = set()
        halted = False
        while True:
            if interrupted.is_set() and not halted:
                halted = True
                await handle.signal(HALT, "interrupted")
            page = await _progress(handle, at)
            for done in page.done:
                tally.retried.update(done.retried)
                _publish(fanout, tally, _events(done))
            at += len(page.done)
            if page.finished:
                stop = page.stop
                break
            if page.asking is not None and page.asking not in asked and not interrupted.is_set():
                asked.add(page.asking)
                await _answer(
                    handle, page, tally, confirm=confirm, display=display, interrupted=interrupted
                )
            elif not page.done:
                await _pause(interrupted)
    targets = TargetsKnown(targets=tally.targets)
    fanout.publish(targets)
    if report_path is not None:
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


async def _progress(handle: WorkflowHandle[object, object], at: int) -> Progress:
    """The workflow's ``progress`` from ``at``, asked again while the server or the worker
    is slow to answer (a query waits for a worker busy with the rollout's own work)."""
    wait = POLL_SECONDS
    for attempt in itertools.count(1):
        try:
            page: Progress = await handle.query("progress", at, result_type=Progress)
        except (RPCError, WorkflowQueryFailedError) as exc:
            # A query also fails while the workflow's task fails (Temporal retries the task:
            # a worker too busy to run it in time, or a bug the operator must see).
            if isinstance(exc, RPCError) and exc.status not in _AGAIN:
                raise
            if attempt % QUERY_PATIENCE == 0:
                log.warning("workflow_slow_to_answer", attempts=attempt, error=str(exc))
            await asyncio.sleep(wait)
            wait = min(wait * 2, 5.0)
        else:
            return page
    raise AssertionError("unreachable")


async def _pause(interrupted: asyncio.Event) -> None:
    """Wait before the next poll; an interrupt (the first) cuts it short."""
    if interrupted.is_set():
        await asyncio.sleep(POLL_SECONDS)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(POLL_SECONDS):
            await interrupted.wait()


def _publish(fanout: Fanout, tally: _Tally, events: list[Event]) -> None:
    """A chunk's events, each cluster's announced first (the progress view counts it)."""
    targets = Counter(e.cluster for e in events if isinstance(e, TargetResult))
    announced: set[str] = set()
    for event in events:
        if isinstance(event, TargetResult) and event.cluster not in announced:
            announced.add(event.cluster)
            fanout.publish(
                ClusterDiscovered(cluster=event.cluster, version="", targets=targets[event.cluster])
            )
        tally.emit(fanout, event)


@contextlib.contextmanager
def _interrupts(interrupted: asyncio.Event, workflow: str) -> Iterator[None]:
    """SIGINT and SIGTERM handled while the coordinator follows the workflow.

    SIGHUP (the terminal went away: a dropped SSH session) stops the rollout as SIGTERM
    does, as in-process, after pointing the streams that were that terminal at /dev/null:
    the report still gets every cluster's line and its summary. Unless SIGHUP was ignored
    when bulkkm started (``nohup``): then the coordinator follows the rollout to its end.
    """

    def on_signal() -> None:
        # Logged, not printed: the live bar keeps log lines whole above it.
        if interrupted.is_set():
            log.warning(
                "interrupt_again",
                note="leaving now: the clusters in flight finish without this coordinator, "
                "and no new one starts",
                attach=f"--attach {workflow} continues the report",
            )
            leave(EXIT_INTERRUPTED)
        interrupted.set()
        log.warning(
            "interrupt",
            note="no new cluster starts; waiting for those in flight (Ctrl-C again to leave now)",
            attach=f"--attach {workflow} continues the report if you leave",
        )

    def on_hangup() -> None:
        if not interrupted.is_set():
            interrupted.set()
            log.warning(
                "hangup",
                note="the terminal went away: no new cluster starts; waiting for those in flight",
                attach=f"--attach {workflow} continues the report if this coordinator is killed",
            )

    signals: tuple[signal.Signals, ...] = ()
    try:
        with interrupts.handled(on_signal, on_hangup) as signals:
            yield
    finally:
        for sig in signals:
            # The report is whole by now; an interrupt while the summary prints just leaves.
            signal.signal(sig, _leave_on_signal)


def _leave_on_signal(_sig: int, _frame: object) -> None:
    """After the rollout's end: leave at once, as interrupted."""
    leave(EXIT_INTERRUPTED)


async def _answer(
    handle: WorkflowHandle[object, object],
    page: Progress,
    tally: _Tally,
    *,
    confirm: ConfirmWave | None,
    display: Display,
    interrupted: asyncio.Event,
) -> None:
    """The operator's word on the wave the workflow waits after, sent to it (if asked here).

    An interrupt while the question waits is no answer: the workflow is halted instead.
    """
    number = page.asking
    assert number is not None
    if confirm is None:
        display.say(
            f"wave {number} of {page.waves} done: the rollout waits for a go-ahead; attach "
            f"on a terminal with --attach {handle.id} --confirm-waves to give it"
        )
        return
    counts = tally.waves.get(number, Counter())
    wave = WaveFinished(
        number=number,
        of=page.waves,
        clusters=(),
        targets=sum(counts.values()),
        failed=counts[Outcome.FAILED],
        counts=dict(counts),
    )
    asking = asyncio.ensure_future(confirm(wave))
    stopping = asyncio.ensure_future(interrupted.wait())
    try:
        await asyncio.wait((asking, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not asking.done():
            asking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asking
    if not asking.cancelled():
        await handle.signal(PROCEED, Answer(wave=number, go=asking.result()))


def _events(done: ChunkDone) -> list[Event]:
    """A finished chunk's report events (run id and sequence set again on publishing)."""
    if done.skipped is not None:
        return [
            ClusterResult(
                cluster=name, outcome=Outcome.SKIPPED, reason=done.skipped, wave=done.wave
            )
            for name in done.clusters
        ]
    if done.error is not None:
        error = ErrorInfo(category=ErrorCategory.PERMANENT, message=done.error[:500])
        return [
            ClusterResult(
                cluster=name,
                outcome=Outcome.FAILED,
                error=error,
                reason="worker_failed",
                wave=done.wave,
            )
            for name in done.clusters
        ]
    return [codec.from_json(item) for item in unpack(done.events)] if done.events else []


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
