"""What a run did and what is left, from its report lines: one aggregator for every front end.

The closing summary of ``apply``/``plan``/``check`` and ``bulkkm report summarize`` are the
same thing: ``Aggregator`` reads report lines (the dicts the report writer wrote), ``Summary``
holds the result, ``summary_lines`` renders it as text and ``summary_json`` as JSON. Nothing
here reads a file but ``summarize``, which feeds a report's lines in, and the closing lines,
which look beside the report for the one that resumed it (``resumed_by``: first lines only).
"""

from __future__ import annotations

import dataclasses
import shlex
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Final

from bulkkm.codec import CodecError, loads_line
from bulkkm.events import TemporalRun
from bulkkm.report import read_lines

__all__ = [
    "CUT",
    "ONTAP_CODES",
    "Aggregator",
    "ProblemTarget",
    "Summary",
    "aggregate",
    "next_report_name",
    "resume_command",
    "resumed_by",
    "summarize",
    "summary_json",
    "summary_lines",
]

ONTAP_CODES: Final[Mapping[str, str]] = {
    "65536870": "key server already configured",
    "65536871": "duplicate key servers in the request",
    "65536038": "at most 4 active key servers per key manager",
    "65536821": "certificate not installed",
    "65536822": "multitenant key management not supported by this ONTAP version",
    "65536824": "multitenant key management not supported in MetroCluster",
    "65536828": "external key management not enabled for the SVM",
    "65536834": "could not read the SVM's existing key servers",
    "65536852": "could not query the KMIP server's protocol versions (unreachable?)",
    "65536921": "the KMIP server could not execute the command",
    "66060338": "TLS to the KMIP server failed: wrong server CA certificate",
    "66060339": "TLS to the KMIP server failed: wrong client certificate",
    "66060340": "TLS to the KMIP server failed (Cryptsoft error)",
    "65536600": "a node is out of quorum",
    "2621573": "SVM temporarily locked (configuration baseline)",
    "65536700": "the key server holds keys in use that no other server has",
    "65536843": "the key server is not configured",
}
"""Short descriptions of the ONTAP error codes bulkkm meets (shared/ONTAP.md)."""

CUT: Final = 20
"""Rows a list shows before "and N more" (``--all`` shows every one)."""
_DONE: Final = frozenset({"added", "present", "removed", "absent"})
_WRITES: Final = frozenset({"apply", "migrate"})
_PROBLEMS: Final = frozenset({"failed", "blocked"})
_UNREACHABLE: Final = frozenset({"transport", "timeout"})
_NAMED: Final = 10
"""Clusters named in a reason's line when it has at most this many."""
_FEW: Final = 5
"""Blocked targets shown before "and N more": their reasons are counted above."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ProblemTarget:
    """A target that failed or was blocked: where, and why."""

    cluster: str
    svm: str | None
    server: str
    outcome: str
    category: str | None
    code: str | None
    message: str
    reason: str | None

    @property
    def error(self) -> str:
        """``65536921 (the KMIP server could not ...): message`` or the reason and message."""
        head = self.code or self.reason or self.category or self.outcome
        described = ONTAP_CODES.get(self.code or "")
        if described:
            head = f"{head} ({described})"
        return f"{head}: {self.message}" if self.message else head


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """A run, aggregated: what was done, what is left, and why."""

    run_id: str | None
    command: str | None
    dry_run: bool
    inventory: str | None
    started_at: str | None
    clusters: int | None
    """Clusters in the inventory (``--limit`` ones included), from the run line."""
    complete: bool
    """False when the report has no summary line (the run was killed, or still runs)."""
    lines: int
    new: dict[str, int]
    """Outcomes of the targets this run worked on, most first."""
    carried_over: dict[str, int]
    """Outcomes carried over from the report a ``--resume`` run started from."""
    reasons: dict[str, int]
    """``outcome reason`` -> targets, for the targets not done (``skipped max_failures``)."""
    errors: dict[str, int]
    """``category code`` -> targets and clusters that ended with it, most first."""
    clusters_not_done: dict[str, tuple[str, ...]]
    """Reason (``interrupted``, ``limit``, ``unreachable`` …) -> clusters without target lines."""
    clusters_with_targets_left: dict[str, int]
    """cluster -> targets not added, present or would_add, most first."""
    problems: tuple[ProblemTarget, ...]
    """Failed and blocked targets, in report order."""
    waves: dict[int, dict[str, int]]
    slowest: tuple[tuple[str, float], ...]
    """The five clusters that took longest (seconds), for runs that changed something."""
    exit_code: int | None
    stop_reason: str | None
    duration_ms: int | None
    verified: dict[str, int] = dataclasses.field(default_factory=dict)
    """``migrate``: key managers whose verification ``passed`` or ``failed``, or that the run
    stopped before it ended (``cancelled`` when interrupted, ``skipped``)."""
    verify_failures: tuple[str, ...] = ()
    """``cluster/svm: reason`` of each verification that failed (not of those stopped)."""
    temporal: TemporalRun | None = None
    """The Temporal server and workflow of a ``--temporal`` run, from the run line."""
    options: tuple[str, ...] | None = None
    """The flags that shaped the run (``--plan P --waves 1,10%``), from the run line; None
    in a report written before the run line had them."""
    clusters_to_change: dict[str, int] = dataclasses.field(default_factory=dict)
    """``plan``, ``check``, ``--dry-run``: cluster -> targets it would change (``would_add``,
    ``would_remove``), most first: where the fleet is not as the inventory wants it."""

    @property
    def outcomes(self) -> dict[str, int]:
        """New and carried-over outcomes together."""
        total = Counter(self.new) + Counter(self.carried_over)
        return dict(total.most_common())

    @property
    def targets(self) -> int:
        """Target lines."""
        return sum(self.new.values()) + sum(self.carried_over.values())

    @property
    def left_to_do(self) -> bool:
        """Whether a ``--resume`` run has anything to do (``--limit`` clusters aside)."""
        if self.command not in _WRITES or self.dry_run:
            return False
        if any(reason != "limit" for reason in self.clusters_not_done):
            return True
        return not self.complete or any(o not in _DONE for o in self.outcomes)


class Aggregator:
    """Counts report lines as they come; ``result()`` at any time."""

    def __init__(self) -> None:
        """Nothing counted yet."""
        self._run: Mapping[str, object] = {}
        self._summary: Mapping[str, object] | None = None
        self._lines = 0
        self._new: Counter[str] = Counter()
        self._carried: Counter[str] = Counter()
        self._reasons: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._clusters: dict[str, list[str]] = {}
        self._left: Counter[str] = Counter()
        self._to_change: Counter[str] = Counter()
        self._problems: list[ProblemTarget] = []
        self._waves: dict[int, Counter[str]] = {}
        self._span: dict[str, tuple[str, str]] = {}
        self._verified: Counter[str] = Counter()
        self._verify_failures: list[str] = []

    def __call__(self, line: Mapping[str, object]) -> None:
        """Count one report line."""
        self._lines += 1
        kind = line.get("type")
        if kind == "run":
            self._run = line
        elif kind == "summary":
            self._summary = line
        elif kind == "target":
            self._target(line)
        elif kind == "cluster":
            self._cluster(line)
        elif kind == "verify":
            self._verify(line)

    def _verify(self, line: Mapping[str, object]) -> None:
        """A key manager's verification: passed, failed and why, or stopped before its end."""
        outcome = str(line.get("outcome"))
        self._verified[outcome] += 1
        if outcome == "failed":
            where = f"{line.get('cluster')}/{line.get('svm') or '(cluster)'}"
            self._verify_failures.append(f"{where}: {line.get('reason') or 'failed'}")

    def _target(self, line: Mapping[str, object]) -> None:
        """A target line: its outcome, error, wave and time span."""
        outcome = str(line.get("outcome"))
        carried = bool(line.get("carried_over"))
        (self._carried if carried else self._new)[outcome] += 1
        cluster = str(line.get("cluster"))
        self._wave(line, outcome)
        error = line.get("error")
        if isinstance(error, Mapping):
            self._errors[_error_key(error)] += 1
        if outcome in ("would_add", "would_remove"):
            self._to_change[cluster] += 1
        elif outcome not in _DONE:
            self._left[cluster] += 1
            self._reasons[f"{outcome} {line.get('reason') or _code(error) or ''}".strip()] += 1
        if outcome in _PROBLEMS:
            self._problems.append(_problem(line, outcome, error))
        started, finished = line.get("started_at"), line.get("finished_at")
        sent = outcome in ("added", "removed", "failed")  # the others took no time of theirs
        if sent and not carried and isinstance(started, str) and isinstance(finished, str):
            first, last = self._span.get(cluster, (started, finished))
            # ISO timestamps of one format and zone sort as strings.
            self._span[cluster] = (min(first, started), max(last, finished))

    def _cluster(self, line: Mapping[str, object]) -> None:
        """A cluster line: a cluster not done, and why."""
        error = line.get("error")
        if isinstance(error, Mapping):
            self._errors[_error_key(error)] += 1
        self._wave(line, f"cluster {line.get('outcome')}")
        reason = str(line.get("reason") or line.get("outcome"))
        if line.get("outcome") == "failed" and line.get("reason") in (None, "discovery_failed"):
            # A failed discovery, by what failed; other reasons (duplicate_cluster, a
            # regional worker that failed) name themselves.
            category = error.get("category") if isinstance(error, Mapping) else None
            reason = "unreachable" if category in _UNREACHABLE else f"discovery failed ({category})"
        self._clusters.setdefault(reason, []).append(str(line.get("cluster")))

    def _wave(self, line: Mapping[str, object], key: str) -> None:
        """Count a line in its wave, when the run rolled out in waves."""
        wave = line.get("wave")
        if isinstance(wave, int):
            self._waves.setdefault(wave, Counter())[key] += 1

    def result(self) -> Summary:
        """The aggregate of every line so far."""
        run, summary = self._run, self._summary or {}
        command = _str(run.get("command"))
        changes = command in _WRITES and not run.get("dry_run")
        clusters = run.get("clusters")
        return Summary(
            run_id=_str(run.get("run_id")),
            command=command,
            dry_run=bool(run.get("dry_run")),
            inventory=_str(run.get("inventory")),
            started_at=_str(run.get("started_at")),
            clusters=clusters if isinstance(clusters, int) else None,
            complete=self._summary is not None,
            lines=self._lines,
            new=dict(self._new.most_common()),
            carried_over=dict(self._carried.most_common()),
            reasons=dict(self._reasons.most_common()),
            errors=dict(self._errors.most_common()),
            # Names in order, not in the order clusters happened to end: a reader looks one up.
            clusters_not_done={
                reason: tuple(sorted(names))
                for reason, names in sorted(self._clusters.items(), key=lambda kv: -len(kv[1]))
            },
            clusters_with_targets_left=dict(
                sorted(self._left.items(), key=lambda item: (-item[1], item[0]))
            ),
            problems=tuple(self._problems),
            waves={n: dict(c.most_common()) for n, c in sorted(self._waves.items())},
            slowest=_slowest(self._span) if changes else (),
            exit_code=_int(summary.get("exit_code")),
            stop_reason=_str(summary.get("stop_reason")),
            duration_ms=_int(summary.get("duration_ms")),
            verified=dict(self._verified),
            verify_failures=tuple(self._verify_failures),
            temporal=_temporal(run.get("temporal")),
            options=_options(run.get("options")),
            clusters_to_change=dict(
                sorted(self._to_change.items(), key=lambda item: (-item[1], item[0]))
            ),
        )


def _str(value: object) -> str | None:
    """A string field, or None."""
    return None if value is None else str(value)


def _int(value: object) -> int | None:
    """An integer field, or None."""
    return value if isinstance(value, int) else None


def _temporal(value: object) -> TemporalRun | None:
    """The run line's ``temporal`` object, or None (an in-process run, or a report before it)."""
    if not isinstance(value, Mapping):
        return None
    fields = [value.get(key) for key in ("address", "namespace", "workflow_id")]
    if not all(isinstance(field, str) and field for field in fields):
        return None
    address, namespace, workflow = map(str, fields)
    return TemporalRun(address=address, namespace=namespace, workflow_id=workflow)


def _options(value: object) -> tuple[str, ...] | None:
    """The run line's ``options`` (flags); None in a report from before them, or if malformed."""
    if not isinstance(value, list) or not all(isinstance(flag, str) for flag in value):
        return None
    return tuple(value)


def _code(error: object) -> str | None:
    """The ONTAP code of an error object, if any."""
    return _str(error.get("code")) if isinstance(error, Mapping) else None


def _error_key(error: Mapping[str, object]) -> str:
    """``transient 65536921`` or just ``transport``."""
    return " ".join(str(error[k]) for k in ("category", "code") if error.get(k))


def _problem(line: Mapping[str, object], outcome: str, error: object) -> ProblemTarget:
    """A failed or blocked target line as a ``ProblemTarget``."""
    err = error if isinstance(error, Mapping) else {}
    return ProblemTarget(
        cluster=str(line.get("cluster")),
        svm=_str(line.get("svm")),
        server=str(line.get("server")),
        outcome=outcome,
        category=_str(err.get("category")),
        code=_str(err.get("code")),
        message=str(err.get("message") or ""),
        reason=_str(line.get("reason")),
    )


def _slowest(span: Mapping[str, tuple[str, str]], n: int = 5) -> tuple[tuple[str, float], ...]:
    """The ``n`` clusters with the longest first-start to last-finish, in seconds."""
    seconds = []
    for cluster, (first, last) in span.items():
        try:
            took = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
        except ValueError:
            continue
        seconds.append((cluster, took))
    return tuple(sorted(seconds, key=lambda item: item[1], reverse=True)[:n])


def summarize(path: Path) -> Summary:
    """The aggregate of a report file (complete or cut); ReportError when it is not one."""
    aggregate = Aggregator()
    for line in read_lines(path):
        aggregate(line)
    return aggregate.result()


def _later_names(report: Path) -> Iterator[Path]:
    """The names beside ``report`` for the runs that resume it, in order: ``r.jsonl`` ->
    ``r-2.jsonl``, ``r-3.jsonl`` ... (``r-2.jsonl`` -> ``r-3.jsonl`` ...), a thousand of them."""
    stem, dash, number = report.stem.rpartition("-")
    base, start = (stem, int(number) + 1) if dash and number.isdigit() else (report.stem, 2)
    for n in range(start, start + 1000):
        yield report.with_name(f"{base}-{n}{report.suffix}")


def next_report_name(report: Path, exists: Mapping[Path, bool] | None = None) -> Path:
    """A fresh name beside ``report`` for the run that resumes it: ``r.jsonl`` -> ``r-2.jsonl``."""
    for candidate in _later_names(report):
        taken = exists.get(candidate, False) if exists is not None else candidate.exists()
        if not taken:
            return candidate
    base = candidate.stem.rpartition("-")[0]  # every name taken: the last one's stem
    return report.with_name(f"{base}-resumed{report.suffix}")


def resumed_by(report: Path) -> Path | None:
    """The report of a run that resumed ``report``, among the names ``next_report_name``
    gives (``r-2.jsonl`` for ``r.jsonl``): its run line names ``report`` as it started from."""
    wanted = str(report.resolve())
    for candidate in _later_names(report):
        try:
            with candidate.open("rb") as lines:
                run = loads_line(lines.readline())
        except FileNotFoundError:
            return None  # the names are taken in order: none further
        except (OSError, CodecError):
            continue
        if run.get("resumed_from_report") == wanted:
            return candidate
    return None


def resume_command(result: Summary, report: Path) -> str | None:
    """``bulkkm apply INVENTORY --report NEW --resume REPORT`` when something is left to do.

    With the options that shaped the run (an approved ``--plan``, ``--waves``, thresholds,
    ``--limit``...), so that the rest runs as the start did: without them, the rest of a
    rollout in waves would go to every cluster at once, or past what the plan approved.
    A ``--temporal`` run is continued the way it ran, through its Temporal server: resumed
    with ``--temporal`` (and ``--namespace``), or, when its report has no summary line (the
    coordinator left; the workflow goes on without it), re-attached to finish that report.
    """
    if not result.left_to_do or result.inventory is None:
        return None
    command = result.command or "apply"
    temporal = result.temporal
    server: list[str] = []
    if temporal is not None:
        server = ["--temporal", temporal.address]
        if temporal.namespace != "default":  # the CLI's default namespace
            server += ["--namespace", temporal.namespace]
        if not result.complete:
            attach = ["--attach", temporal.workflow_id, "--report", str(report)]
            return shlex.join(["bulkkm", command, *server, *attach])
    new = next_report_name(report)
    resume = ["--report", str(new), "--resume", str(report)]
    options = result.options or ()
    return shlex.join(["bulkkm", command, result.inventory, *server, *options, *resume])


def _cut(rows: list[str], every: bool, hint: str, cut: int = CUT) -> list[str]:
    """``rows``, or the first ``cut`` of them and a line saying how many more there are."""
    if every or len(rows) <= cut:
        return rows
    return [*rows[:cut], f"  ... and {len(rows) - cut} more{hint}"]


def _counts(counts: Mapping[str, int]) -> str:
    """``added 12, present 3``."""
    return ", ".join(f"{key} {count}" for key, count in counts.items())


def summary_lines(
    result: Summary,
    *,
    report: Path | None,
    every: bool = False,
    retried: Mapping[str, int] | None = None,
    more: str = " (--all shows every one)",
) -> list[str]:
    """The aggregate as text, most important first; lists are cut with a stated remainder.

    ``more`` follows "and N more" where a list is cut: how to see the rest.
    """
    hint = more
    lines: list[str] = []
    what = result.command or "run"
    if result.dry_run and result.command in _WRITES:
        what += " --dry-run"
    lines.append(f"{what}: {result.targets} targets")
    if result.new:
        lines.append(f"  this run:     {_counts(result.new)}")
    if result.carried_over:
        lines.append(f"  carried over: {_counts(result.carried_over)} (from the resumed report)")
    if result.reasons:
        lines.append("targets not done, by reason:")
        rows = [f"  {key:<40} {n:>8}" for key, n in result.reasons.items()]
        lines += _cut(rows, every, hint)
    lines += _cluster_lines(result, every, hint)
    for outcome, cut in (("failed", CUT), ("blocked", _FEW)):
        rows = [
            f"  {p.cluster}  {p.svm or '(cluster)'}  {p.server}  {p.error}"
            for p in result.problems
            if p.outcome == outcome
        ]
        if rows:
            lines.append(f"{outcome} targets: {len(rows)} (cluster  svm  server  error)")
            lines += _cut(rows, every, hint, cut)
    if result.errors or retried:
        errors = Counter(result.errors)
        retries = Counter(retried or {})
        lines.append("errors (final targets and clusters; retried attempts):")
        rows = []
        for key, _ in (errors + retries).most_common():
            code = key.rpartition(" ")[2]
            described = f"  {ONTAP_CODES[code]}" if code in ONTAP_CODES else ""
            rows.append(f"  {key:<28} {errors[key]:>8} {retries[key]:>8}{described}")
        lines += _cut(rows, every, hint)
    if result.verified:
        lines.append(f"key managers verified: {_counts(result.verified)}")
        rows = [f"  {failure}" for failure in result.verify_failures]
        lines += _cut(rows, every, hint)
    for number, counts in result.waves.items():
        lines.append(f"wave {number}: {_counts(counts)}")
    if result.slowest:
        slow = ", ".join(f"{cluster} {seconds:.1f} s" for cluster, seconds in result.slowest)
        lines.append(f"slowest clusters: {slow}")
    lines += _ending(result, report)
    return lines


def _cluster_lines(result: Summary, every: bool, hint: str) -> list[str]:
    """Clusters not done, by reason, named where few; clusters to change (what ``plan`` and
    ``check`` found not as the inventory wants it); clusters with targets left.

    A few names fit on the line that counts them; ``every`` (``--all``) lists more than that
    one per line, as the other lists are, rather than as one line thousands of names long.
    """
    lines: list[str] = []
    if result.clusters_not_done:
        total = sum(len(names) for names in result.clusters_not_done.values())
        lines.append(f"clusters not done: {total}")
        for reason, names in result.clusters_not_done.items():
            if every and len(names) > _NAMED:
                lines.append(f"  {reason}: {len(names)}")
                lines += [f"    {name}" for name in names]
                continue
            shown = names if len(names) <= _NAMED else names[:3]
            more = "" if len(shown) == len(names) else f", ... and {len(names) - len(shown)} more"
            lines.append(f"  {reason}: {len(names)} ({', '.join(shown)}{more})")
    for title, clusters in (
        ("clusters to change", result.clusters_to_change),
        ("clusters with targets left", result.clusters_with_targets_left),
    ):
        lines += _per_cluster(title, list(clusters.items()), every=every)
    return lines


def _per_cluster(title: str, rows: list[tuple[str, int]], *, every: bool) -> list[str]:
    """``title: N (cluster count, ...)``, or with ``every`` and many, one cluster a line."""
    if not rows:
        return []
    if every and len(rows) > _NAMED:
        return [f"{title}: {len(rows)} (targets  cluster)"] + [
            f"  {n:>7}  {cluster}" for cluster, n in rows
        ]
    few = rows[:_NAMED]
    more = "" if len(few) == len(rows) else f", ... and {len(rows) - len(few)} more"
    counts = ", ".join(f"{cluster} {n}" for cluster, n in few)
    return [f"{title}: {len(rows)} ({counts}{more})"]


def _ending(result: Summary, report: Path | None) -> list[str]:
    """How the run ended, and the next command."""
    lines: list[str] = []
    if not result.complete:
        lines.append(
            "the report has no summary line: the run was killed (or still runs); "
            "these are the lines it wrote"
        )
    else:
        seconds = f" in {result.duration_ms / 1000:.1f} s" if result.duration_ms else ""
        stop = f", stopped: {result.stop_reason}" if result.stop_reason else ""
        lines.append(f"finished{seconds}, exit code {result.exit_code}{stop}")
    if report is not None:
        command = resume_command(result, report)
        later = resumed_by(report) if command is not None else None
        if later is not None:
            # `report summarize` of an older report: the job went on in a newer one.
            lines.append(f"already resumed: bulkkm report summarize {later}")
        elif command is not None:
            lines.append(f"to finish the job: {command}")
            if result.temporal is not None and not result.complete:
                lines.append(
                    "  (its workflow goes on without a coordinator: --attach writes the rest "
                    "of this report)"
                )
            elif "limit" in result.clusters_not_done and result.options is None:
                # A report from before the run line kept the run's flags (--limit among them).
                lines.append("  (add the same --limit to stay within this run's clusters)")
            if result.problems and all(p.outcome == "blocked" for p in result.problems):
                lines.append("  (blocked targets stay blocked until their precondition is fixed)")
    return lines


def summary_json(result: Summary) -> dict[str, object]:
    """The aggregate as a JSON-ready dict, every list in full."""
    return {
        "run_id": result.run_id,
        "command": result.command,
        "dry_run": result.dry_run,
        "inventory": result.inventory,
        "started_at": result.started_at,
        "clusters": result.clusters,
        "complete": result.complete,
        "targets": result.targets,
        "outcomes": result.outcomes,
        "new": result.new,
        "carried_over": result.carried_over,
        "reasons": result.reasons,
        "errors": result.errors,
        "clusters_not_done": {k: list(v) for k, v in result.clusters_not_done.items()},
        "clusters_with_targets_left": result.clusters_with_targets_left,
        "clusters_to_change": result.clusters_to_change,
        "problems": [
            {**dataclasses.asdict(p), "description": ONTAP_CODES.get(p.code or "")}
            for p in result.problems
        ],
        "waves": {str(k): v for k, v in result.waves.items()},
        "slowest_clusters": [list(item) for item in result.slowest],
        "verified": result.verified,
        "verify_failures": list(result.verify_failures),
        "temporal": None if result.temporal is None else dataclasses.asdict(result.temporal),
        "options": None if result.options is None else list(result.options),
        "exit_code": result.exit_code,
        "stop_reason": result.stop_reason,
        "duration_ms": result.duration_ms,
    }


def aggregate(lines: Iterable[Mapping[str, object]]) -> Summary:
    """The aggregate of ``lines`` (for tests and callers that hold lines already)."""
    aggregator = Aggregator()
    for line in lines:
        aggregator(line)
    return aggregator.result()
