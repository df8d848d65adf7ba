"""The command line: argument parsing, logging setup and exit codes.

Every mistake the user can make ends here as one clear line on stderr and exit code 2,
before anything is sent.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import math
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import orjson
import structlog

from bulkkm import loop
from bulkkm.console import ask, window_lines
from bulkkm.errors import BulkkmError, InventoryError, UsageError
from bulkkm.events import Subscriber, WaveFinished
from bulkkm.inventory import describe, inventory_schema
from bulkkm.logs import configure_logging, printable, reader_gone
from bulkkm.planfile import read_plan
from bulkkm.request import RunRequest, load, prepare
from bulkkm.steps_view import StepsView
from bulkkm.summary import summarize, summary_json, summary_lines

__all__ = ["main"]


log = structlog.get_logger("bulkkm")

EXIT_USAGE = 2
EXIT_REPORT_CUT = 5
"""``report summarize``: the report has no summary line (the run was killed or still runs)."""
EXIT_REPORT_EMPTY = 6
"""``report summarize``: the report holds no line at all."""
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        """``bulkkm apply: error: ...`` and exit 2, without the usage block."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Version(argparse.Action):
    """``--version``: the installed version, looked up only when asked for."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> NoReturn:
        """Print ``bulkkm VERSION`` and exit 0, as argparse's own version action does."""
        from importlib.metadata import version  # noqa: PLC0415 -- only --version needs it

        sys.stdout.write(f"bulkkm {version('bulkkm')}\n")
        parser.exit()


def _count(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high`` (no upper bound: None)."""

    def parse(text: str) -> int:
        """Parse and range-check one count."""
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bound = f"{low} or more" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"{text!r} must be {bound}")
        return value

    return parse


def _number(what: str, high: float = math.inf) -> Callable[[str], float]:
    """An argparse type: a finite number from 0 to ``high``, named ``what`` in errors."""

    def parse(text: str) -> float:
        """Parse and range-check one number."""
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not (math.isfinite(value) and 0 <= value <= high):
            bound = f"from 0 to {high:g}" if high != math.inf else "0 or more"
            raise argparse.ArgumentTypeError(f"{text!r} must be {bound}")
        return value

    return parse


_seconds = _number("a number of seconds")
_percent = _number("a percentage", high=100)


def _rollout_options(p: argparse.ArgumentParser) -> None:
    """The options of the commands that write: resume, dry run, thresholds, plans, waves."""
    p.add_argument(
        "--resume",
        type=Path,
        metavar="OLD_REPORT",
        help="carry over what OLD_REPORT finished, where the clusters confirm it",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="discover and plan; nothing but GET is sent"
    )
    p.add_argument(
        "--max-failures",
        type=_count(0),
        metavar="N",
        help="stop starting new work after more than N failures (exit 3)",
    )
    p.add_argument(
        "--max-fail-percent",
        type=_percent,
        metavar="P",
        help="stop starting new work once more than P%% of targets failed (with --waves: "
        "stop between waves once a wave's failures exceed P%%, default 0) (exit 3)",
    )
    p.add_argument(
        "--plan",
        type=Path,
        metavar="PLAN",
        help="execute a saved plan; refuse drifted key managers",
    )
    p.add_argument(
        "--waves", metavar="SIZES", help="roll out in cumulative waves of clusters: 1,10%%,100%%"
    )
    p.add_argument("--wave-order", metavar="ORDER", help="inventory (default), name or random:SEED")
    p.add_argument(
        "--pause-between-waves", type=_seconds, metavar="SECONDS", help="wait between waves"
    )
    p.add_argument(
        "--confirm-waves", action="store_true", help="show each wave's results and ask to go on"
    )
    p.add_argument(
        "--ignore-windows", action="store_true", help="change clusters outside their windows"
    )


def _temporal_options(p: argparse.ArgumentParser) -> None:
    """``--temporal``, ``--namespace`` and ``--attach``: a run across regions' workers."""
    p.add_argument(
        "--temporal",
        metavar="HOST:PORT",
        help="run on regional workers through this Temporal server (extra temporal)",
    )
    p.add_argument("--namespace", default="default", help="Temporal namespace (with --temporal)")
    p.add_argument(
        "--attach",
        metavar="WORKFLOW_ID",
        help="with --temporal: continue --report from a rollout workflow already started",
    )


def _parser() -> _Parser:
    """The whole command line."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--log-format",
        choices=("json", "console"),
        help="log lines on stderr (default: console on a terminal, json otherwise)",
    )
    common.add_argument("-v", "--verbose", action="count", default=0, help="more log lines (debug)")
    common.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")

    parser = _Parser(
        prog="bulkkm",
        description="Add KMIP key servers to ONTAP external key managers across a fleet.",
    )
    parser.add_argument(
        "--version", action=_Version, nargs=0, help="show program's version number and exit"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    validate = sub.add_parser("validate", parents=[common], help="check an inventory; no network")
    validate.add_argument("inventory", type=Path)

    def fleet_command(name: str, help_text: str, report_required: bool) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text)
        p.add_argument("inventory", type=Path, nargs="?" if name != "check" else None)
        p.add_argument(
            "--report", type=Path, required=report_required, help="the JSON-lines report to write"
        )
        p.add_argument(
            "--overwrite",
            action="store_true",
            help="replace an existing --report (or --out) file instead of refusing",
        )
        p.add_argument(
            "--limit",
            action="append",
            default=[],
            metavar="GLOB",
            help="only clusters whose name matches (repeatable)",
        )
        p.add_argument(
            "--max-connections",
            type=_count(1, 1_000_000),
            metavar="N",
            help="connections open at once, across clusters: a cluster holds its concurrency "
            "of them while it works (default: sized for the machine, at most 4096)",
        )
        return p

    plan = fleet_command(
        "plan", "discover and show what apply would do (GET only)", report_required=False
    )
    plan.add_argument("--out", type=Path, metavar="PLAN", help="save the plan for apply --plan")
    plan.add_argument("--show", type=Path, metavar="PLAN", help="print a saved plan and exit")
    plan.add_argument(
        "--show-targets", action="store_true", help="print one line per target (stdout)"
    )
    plan.add_argument(
        "--show-steps",
        action="store_true",
        help="print each key manager's ordered steps: additions, the verification, removals",
    )
    check = fleet_command(
        "check",
        "compliance audit: exit 4 when targets lack their servers (GET only)",
        report_required=False,
    )
    apply = fleet_command(
        "apply", "add the missing key servers (never removes anything)", report_required=True
    )
    migrate = fleet_command(
        "migrate",
        "add the desired servers, verify them from every node, then remove retire_servers",
        report_required=True,
    )
    for p in (apply, migrate):
        _rollout_options(p)
    for p in (check, apply, migrate):
        _temporal_options(p)
    migrate.add_argument(
        "--verify-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="how long new servers have to become reachable from every node (default 300)",
    )
    migrate.add_argument(
        "--verify-keys",
        action="store_true",
        help="also restore the keys from a new server and require every key restored on "
        "every node before removing anything (ONTAP 9.13+)",
    )

    report = sub.add_parser("report", help="read a report back")
    report_sub = report.add_subparsers(dest="report_command", required=True, parser_class=_Parser)
    summarize_cmd = report_sub.add_parser(
        "summarize", parents=[common], help="counts by outcome, error code and cluster"
    )
    summarize_cmd.add_argument("file", type=Path)
    summarize_cmd.add_argument("--json", action="store_true", help="print JSON instead of text")
    summarize_cmd.add_argument(
        "--all", action="store_true", help="every row of every list (default: 20, then a count)"
    )

    worker = sub.add_parser(
        "worker", parents=[common], help="a region's worker for --temporal runs (extra temporal)"
    )
    worker.add_argument("--temporal", required=True, metavar="HOST:PORT", help="Temporal server")
    worker.add_argument("--namespace", default="default", help="Temporal namespace")
    worker.add_argument(
        "--region", required=True, help="the region served: clusters with this region:"
    )
    worker.add_argument(
        "--inventory",
        required=True,
        type=Path,
        help="this worker's copy of the inventory (its secrets resolved here)",
    )
    sub.add_parser("schema", parents=[common], help="print the inventory format as JSON Schema")
    sub.add_parser(
        "simulate",
        help="serve a simulated ONTAP fleet on loopback (see simulate --help)",
        add_help=False,
    )
    demo = sub.add_parser(
        "demo", parents=[common], help="apply a rollout to an in-process simulated fleet"
    )
    demo.add_argument(
        "--clusters",
        type=_count(1, 10_000),
        default=200,
        metavar="N",
        help="simulated clusters, 1 to 10000 (default 200)",
    )
    demo.add_argument(
        "--svms",
        type=_count(0, 64),
        default=8,
        metavar="N",
        help="SVMs per cluster, 0 to 64 (default 8)",
    )
    demo.add_argument(
        "--report",
        type=Path,
        default=None,
        help="where to write the report (default reports/demo-TIME.jsonl)",
    )
    demo.add_argument("--overwrite", action="store_true", help="replace an existing --report")
    _service_commands(sub, common)
    return parser


def _service_commands(sub: argparse._SubParsersAction[_Parser], common: _Parser) -> None:
    """``serve`` and ``token``: the HTTP service and its API tokens."""
    serve = sub.add_parser("serve", parents=[common], help="serve the HTTP API (runs, approvals)")
    serve.add_argument(
        "--data", type=Path, required=True, help="the database, reports and plans live here"
    )
    serve.add_argument(
        "--listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="default 127.0.0.1:8080"
    )
    serve.add_argument(
        "--inventories",
        type=Path,
        metavar="DIR",
        help="inventories runs may name (DATA/inventories)",
    )
    serve.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve HTTPS (with --tls-key)")
    serve.add_argument("--tls-key", type=Path, metavar="FILE")
    serve.add_argument(
        "--plan-ttl",
        default="24h",
        metavar="DURATION",
        help="how long a plan may wait for approval: 3600, 30m, 24h, 7d (default 24h)",
    )
    token = sub.add_parser("token", help="API tokens of the service")
    token_sub = token.add_subparsers(dest="token_command", required=True, parser_class=_Parser)
    create = token_sub.add_parser("create", parents=[common], help="create a token; printed once")
    create.add_argument("--data", type=Path, required=True)
    create.add_argument("--name", required=True, help="who or what uses it (shown in the history)")
    create.add_argument(
        "--scope",
        required=True,
        choices=("read", "operate", "approve", "admin"),
        help="read; operate (read, start, cancel, retry); approve (read, approve); admin (all)",
    )
    listing = token_sub.add_parser("list", parents=[common], help="names, scopes, dates")
    listing.add_argument("--data", type=Path, required=True)
    revoke = token_sub.add_parser("revoke", parents=[common], help="revoke a token by name")
    revoke.add_argument("--data", type=Path, required=True)
    revoke.add_argument("--name", required=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["simulate"]:
        if not _installed("trustme", "sim", "the simulated fleet"):
            return EXIT_USAGE
        from bulkkm.simulator import main as simulate  # noqa: PLC0415 -- only this command needs it

        return simulate(args_list[1:])
    args = _parser().parse_args(args_list)
    verbosity = -1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0)
    configure_logging(fmt=getattr(args, "log_format", None), verbosity=verbosity)
    try:
        return _dispatch(args)
    except InventoryError as exc:
        for problem in exc.problems:
            print(printable(str(problem)), file=sys.stderr)
        if len(exc.problems) > 1:
            print(
                f"bulkkm: {len(exc.problems)} problems in the inventory; nothing was sent",
                file=sys.stderr,
            )
        return EXIT_USAGE
    except BulkkmError as exc:
        print(f"bulkkm: error: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # the reader left (`| head`): stop writing, as other tools do
        reader_gone(sys.stdout)
        return EXIT_BROKEN_PIPE


def _installed(module: str, extra: str, what: str) -> bool:
    """Whether an extra's ``module`` is importable; if not, say which extra to install."""
    if importlib.util.find_spec(module) is not None:
        return True
    print(f"bulkkm: error: {what} needs its extra: pip install 'bulkkm[{extra}]'", file=sys.stderr)
    return False


def _service(args: argparse.Namespace) -> int:
    """``serve`` and ``token``."""
    if not _installed("aiosqlite", "service", "the service"):
        return EXIT_USAGE
    from bulkkm import service  # noqa: PLC0415 -- only these commands need the extra

    if args.command == "serve":
        host, port = service.parse_listen(args.listen)
        config = service.ServiceConfig(
            data=args.data,
            host=host,
            port=port,
            inventories=args.inventories,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            plan_ttl=service.parse_duration(args.plan_ttl),
        )
        return service.serve(config)
    match args.token_command:
        case "create":
            token = service.create_token(args.data, args.name, service.Scope(args.scope))
            print(token, flush=True)
            print(
                f"bulkkm: token {args.name!r} ({args.scope}) created; it is shown only this once",
                file=sys.stderr,
            )
        case "list":
            for row in service.list_tokens(args.data):
                revoked = f"  revoked {row.revoked_at}" if row.revoked_at else ""
                print(printable(f"{row.name}  {row.scope}  created {row.created_at}{revoked}"))
        case _:
            if not service.revoke_token(args.data, args.name):
                raise UsageError(f"no live token named {args.name!r}")
            print(f"bulkkm: token {args.name!r} revoked", file=sys.stderr)
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    """The command's body."""
    match args.command:
        case "serve" | "token":
            return _service(args)
        case "validate":
            inventory = load(args.inventory)
            for line in describe(inventory):
                print(printable(line))
            return 0
        case "schema":
            sys.stdout.write(
                orjson.dumps(inventory_schema(), option=orjson.OPT_INDENT_2).decode() + "\n"
            )
            return 0
        case "report":
            return _summarize(args.file, as_json=args.json, every=args.all)
        case "worker":
            return _temporal(args)
        case "demo":
            if not _installed("trustme", "sim", "the simulated fleet"):
                return EXIT_USAGE
            from bulkkm.demo import demo  # noqa: PLC0415 -- the simulator loads only for the demo

            return demo(
                clusters=args.clusters,
                svms=args.svms,
                report=args.report,
                overwrite=args.overwrite,
                quiet=args.quiet,
            )
        case _:
            return _fleet(args)


def _fleet(args: argparse.Namespace) -> int:
    """``plan``, ``check`` and ``apply``."""
    if getattr(args, "show", None) is not None:
        if args.inventory is not None:
            raise UsageError("--show PLAN prints a saved plan: give it without an INVENTORY")
        for line in read_plan(args.show).lines():
            print(printable(line))
        return 0
    if getattr(args, "temporal", None) is not None or getattr(args, "attach", None) is not None:
        return _temporal(args)
    request = _request(args)
    confirm = None
    if request.confirm_waves:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise UsageError("--confirm-waves asks on a terminal, and there is none")
        confirm = _confirm_wave
    run = prepare(request, confirm_wave=confirm, parse_ahead=True)
    from bulkkm.runner import run_with_console  # noqa: PLC0415 -- the engine: see prepare

    extra: list[Subscriber] = [run.plan_writer] if run.plan_writer is not None else []
    steps = StepsView() if getattr(args, "show_steps", False) else None
    if steps is not None:
        extra.append(steps)
    with _start_up_frozen():
        summary = loop.run(
            run_with_console(
                run.clusters,
                run.options,
                report=run.report,
                quiet=args.quiet,
                extra=extra,
                show_targets=getattr(args, "show_targets", False),
            )
        )
    if summary.stop_detail is not None:
        print(
            f"bulkkm: error: the report {args.report} could not be written "
            f"({printable(summary.stop_detail)}); no new work was started after it",
            file=sys.stderr,
        )
    if steps is not None:
        for line in steps.lines():
            print(printable(line))
    if args.command == "plan" and not args.quiet:
        for line in window_lines(run.clusters, run.options.clock()):
            print(printable(line))
        if run.plan_writer is not None and run.plan_writer.written:
            missing = len(run.plan_writer.not_discovered)
            gap = f", incomplete: {missing} clusters not discovered" if missing else ""
            print(printable(f"plan: {args.out}{gap} (review with: bulkkm plan --show {args.out})"))
    if run.plan_writer is not None and not run.plan_writer.written:
        print(f"bulkkm: error: the plan {args.out} could not be written", file=sys.stderr)
        return max(summary.exit_code, 1)
    return summary.exit_code


@contextlib.contextmanager
def _start_up_frozen() -> Iterator[None]:
    """The objects start-up made (modules, the inventory, a plan) out of the collector's way.

    They live as long as the run: rather than walking them at every full collection (the
    first ones come before the first request: ~30 ms at 10,000 clusters), the collector
    leaves them alone until the run is over (then they are collectable again, for callers
    that go on in the same process).
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _request(args: argparse.Namespace) -> RunRequest:
    """The run the command line asks for, as plain data."""

    def text(name: str) -> str | None:
        value = getattr(args, name, None)
        return None if value is None else str(value)

    return RunRequest(
        command=args.command,
        inventory=text("inventory"),
        plan=text("plan"),
        report=text("report"),
        out=text("out"),
        overwrite=args.overwrite,
        limit=tuple(args.limit),
        resume=text("resume"),
        dry_run=getattr(args, "dry_run", False),
        max_failures=getattr(args, "max_failures", None),
        max_fail_percent=getattr(args, "max_fail_percent", None),
        waves=getattr(args, "waves", None),
        wave_order=getattr(args, "wave_order", None),
        pause_between_waves=getattr(args, "pause_between_waves", None),
        confirm_waves=getattr(args, "confirm_waves", False),
        ignore_windows=getattr(args, "ignore_windows", False),
        verify_timeout=getattr(args, "verify_timeout", None),
        verify_keys=getattr(args, "verify_keys", False),
        max_connections=getattr(args, "max_connections", None),
    )


def _temporal(args: argparse.Namespace) -> int:
    """``worker``, and ``apply``/``check``/``migrate --temporal``: the ``temporal`` extra."""
    if args.temporal is None:
        raise UsageError("--attach needs --temporal HOST:PORT")
    if not _installed("temporalio", "temporal", "--temporal"):
        return EXIT_USAGE
    from bulkkm import temporal  # noqa: PLC0415 -- only these commands need the extra

    def say(line: str) -> None:
        print(f"bulkkm: {printable(line)}", file=sys.stderr, flush=True)

    confirm = None
    if getattr(args, "confirm_waves", False):
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise UsageError("--confirm-waves asks on a terminal, and there is none")
        confirm = _confirm_wave

    def run() -> int:
        if args.command == "worker":
            return loop.run(
                temporal.serve_worker(args.temporal, args.namespace, args.region, args.inventory)
            )
        if args.attach is not None:
            if args.report is None:
                raise UsageError("--attach needs --report FILE (the report to continue)")
            follow = temporal.attach(
                args.attach, args.report, args.temporal, args.namespace, say=say, confirm=confirm
            )
            return loop.run(follow)
        return loop.run(
            temporal.start(_request(args), args.temporal, args.namespace, say=say, confirm=confirm)
        )

    try:
        code = run()
    except InventoryError:
        raise  # before any connection: main prints it
    except BulkkmError as exc:
        print(f"bulkkm: error: {printable(str(exc))}", file=sys.stderr)
        code = EXIT_USAGE
    return temporal.leave(code)  # without CPython's finalization: see there


async def _confirm_wave(wave: WaveFinished) -> bool:
    """Show a wave's results on the terminal and ask whether to go on."""
    counts = ", ".join(f"{k} {v}" for k, v in sorted(wave.counts.items())) or "no target"
    answer = await ask(
        f"\nwave {wave.number} of {wave.of} done: {counts}\nstart wave {wave.number + 1}? [y/N] "
    )
    return answer.strip().lower() in ("y", "yes")


def _summarize(path: Path, *, as_json: bool, every: bool) -> int:
    """``bulkkm report summarize``: 0, or 5 for a cut report, 6 for an empty one."""
    result = summarize(path)
    if result.lines == 0:
        print(f"bulkkm: {path} is empty: the run wrote no line", file=sys.stderr)
        return EXIT_REPORT_EMPTY
    if as_json:
        body = summary_json(result)
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        for line in summary_lines(result, report=path, every=every):
            print(printable(line))
    if not result.complete:
        print(
            f"bulkkm: {printable(str(path))} is cut: no summary line (the run was killed, "
            "or still runs); the counts are of the lines written",
            file=sys.stderr,
        )
        return EXIT_REPORT_CUT
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
