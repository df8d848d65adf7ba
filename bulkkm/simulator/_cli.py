"""``bulkkm simulate``: serve a simulated fleet on loopback until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import math
import os
import signal
import sys
import tempfile
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, NoReturn

import structlog
import yaml

from bulkkm.errors import InventoryError
from bulkkm.inventory import (
    Cluster,
    DesiredServer,
    Inventory,
    SelectorKind,
    SvmSelector,
    load_inventory,
)
from bulkkm.logs import configure_logging, printable
from bulkkm.servers import normalize_server
from bulkkm.simulator._fleet import SimulatedFleet, point_at, write_secrets
from bulkkm.simulator._generate import Layout, Trouble, layout_of, seeded_trouble
from bulkkm.simulator._spec import (
    ROUTE_KINDS,
    Faults,
    FleetSpec,
    RouteLatency,
    cluster_name,
    parse_unreachable,
    write_latency,
)

__all__ = ["main"]

log = structlog.get_logger("bulkkm.simulator")

_PROG: Final = "bulkkm simulate"
_SHOWN: Final = 5  # clusters listed when there are more than 20
_PROFILES: Final = ("default", "clean")
_DEFAULT_SERVER: Final = "kms-new.example.com:5696"
_NOT_EXTERNAL: Final = "cluster scopes or named SVMs"


class _UsageError(Exception):
    """A command line argparse refused, or options that do not go together."""


class _InventoryProblems(Exception):
    """``--inventory-in`` is not a valid inventory; one line per problem."""

    def __init__(self, problems: tuple[str, ...]) -> None:
        """Keep every problem."""
        super().__init__(problems[0] if problems else "invalid inventory")
        self.problems = problems


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are raised, to be reported on one line."""

    def error(self, message: str) -> NoReturn:
        """Raise instead of printing the usage and exiting."""
        raise _UsageError(message)


def _integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` (to ``high``)."""

    def parse(text: str) -> int:
        """Parse and range-check one integer."""
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{text!r} must be {bound}")
        return value

    return parse


def _milliseconds(text: str) -> float:
    """An argparse type: milliseconds >= 0, returned in seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of milliseconds >= 0")
    return value / 1000.0


def _route_latency(text: str) -> RouteLatency:
    """An argparse type: ``METHOD:ROUTE=MS`` (``*`` for any method or route)."""
    where, equals, ms = text.partition("=")
    method, colon, kind = where.partition(":")
    if not (equals and colon):
        raise argparse.ArgumentTypeError(f"{text!r}: expected METHOD:ROUTE=MS, e.g. GET:svms=300")
    seconds = _milliseconds(ms)
    try:
        return RouteLatency(method=method.strip().upper(), route=kind.strip(), seconds=seconds)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _rate(text: str) -> float:
    """An argparse type: a fraction from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction from 0 to 1")
    return value


def _host(text: str) -> str:
    """An argparse type: an IP address to listen on."""
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


def _server(text: str) -> str:
    """An argparse type: a key-server name, normalised (port 5696 implied)."""
    try:
        return normalize_server(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _unreachable(text: str) -> str:
    """An argparse type: ``NAME``, ``NAME@CLUSTER`` or ``NAME@NODE``, the name normalised."""
    try:
        server, where = parse_unreachable(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return server if where is None else f"{server}@{where}"


def _parser() -> _Parser:
    """The command line of ``bulkkm simulate``."""
    p = _Parser(
        prog=_PROG,
        description="Serve a simulated ONTAP fleet on loopback (HTTPS, TLS verified against a "
        "CA made at start) until Ctrl-C. Times are in milliseconds; rates are fractions of "
        "requests from 0 to 1.",
        epilog="Try: bulkkm simulate --clean --inventory-out fleet.yaml, then in another "
        "terminal bulkkm plan fleet.yaml and bulkkm apply fleet.yaml --report run.jsonl.",
    )
    fleet = p.add_argument_group("the fleet")
    fleet.add_argument(
        "--profile",
        choices=_PROFILES,
        default="default",
        help="default: seeded trouble on purpose (key managers already at 4 primaries, "
        "onboard key managers, ONTAP before 9.8), listed at start, so apply exits 1; "
        "clean: none of it, so the written inventory applies with exit 0",
    )
    fleet.add_argument(
        "--clean",
        dest="profile",
        action="store_const",
        const="clean",
        help="the same as --profile clean",
    )
    fleet.add_argument(
        "--clusters",
        type=_integer(1, 10_000),
        default=None,
        metavar="N",
        help="number of clusters, sim-0000 ... (default 3; not with --inventory-in)",
    )
    fleet.add_argument(
        "--svms",
        type=_integer(0, 1000),
        default=4,
        metavar="N",
        help="data SVMs per cluster, svm000 ... (default 4; with --inventory-in, added to "
        "the SVMs the inventory names)",
    )
    fleet.add_argument(
        "--seed",
        type=_integer(0),
        default=0,
        metavar="N",
        help="the same seed, the same fleet (default 0)",
    )
    fleet.add_argument(
        "--initial-servers",
        type=_integer(0, 4),
        default=None,
        metavar="N",
        help="primaries every external key manager starts with, 0-4 (default: a seeded 0-4; "
        "clean: 0 up to what leaves room for the inventory's servers; with --clean, the "
        "--retire-server among them make room, as migrate interleaves)",
    )
    fleet.add_argument(
        "--dead",
        type=_integer(0),
        default=0,
        metavar="N",
        help="the first N clusters are dead: their ports closed (default 0)",
    )
    fleet.add_argument(
        "--nodes",
        type=_integer(1, 24),
        default=2,
        metavar="N",
        help="nodes per cluster, CLUSTER-01 ... (default 2)",
    )
    fleet.add_argument(
        "--job-mode", action="store_true", help="key-server POSTs answer 202 and a job to poll"
    )
    fleet.add_argument(
        "--job-delay",
        type=_milliseconds,
        default=0.05,
        metavar="MS",
        help="milliseconds a job runs before it ends, with --job-mode (default 50)",
    )
    faults = p.add_argument_group("faults, on every cluster")
    faults.add_argument(
        "--latency",
        type=_milliseconds,
        default=0.0,
        metavar="MS",
        help="milliseconds added to every answer (default 0; 200 makes a Ctrl-C easy to time)",
    )
    faults.add_argument(
        "--post-latency",
        type=_milliseconds,
        default=None,
        metavar="MS",
        help="milliseconds added to the answer of every POST instead of --latency "
        "(default: --latency)",
    )
    faults.add_argument(
        "--write-latency",
        type=_milliseconds,
        default=None,
        metavar="MS",
        help="milliseconds added to the answer of every key-server write (POST to "
        "key-servers, PATCH and DELETE of a key server) instead of --latency or "
        "--post-latency: a real ONTAP answers these in seconds (default: as the others)",
    )
    faults.add_argument(
        "--route-latency",
        type=_route_latency,
        action="append",
        default=[],
        metavar="METHOD:ROUTE=MS",
        help="milliseconds for one method on one kind of resource, before the options above "
        "(repeatable, the first that matches wins; METHOD or ROUTE may be *; ROUTE is one of "
        f"{', '.join(ROUTE_KINDS)}), e.g. GET:key_managers=300",
    )
    faults.add_argument(
        "--jitter",
        type=_milliseconds,
        default=0.0,
        metavar="MS",
        help="milliseconds, at most, drawn uniformly per answer and added to --latency (default 0)",
    )
    faults.add_argument(
        "--transient-rate",
        type=_rate,
        default=0.0,
        metavar="F",
        help="fraction 0-1 of key-server POSTs refused with a transient KMIP error (retried)",
    )
    faults.add_argument(
        "--error500-rate",
        type=_rate,
        default=0.0,
        metavar="F",
        help="fraction 0-1 of requests answered 500",
    )
    faults.add_argument(
        "--reset-rate",
        type=_rate,
        default=0.0,
        metavar="F",
        help="fraction 0-1 of requests dropped unanswered before anything is applied",
    )
    faults.add_argument(
        "--ambiguous-rate",
        type=_rate,
        default=0.0,
        metavar="F",
        help="fraction 0-1 of key-server POSTs applied, then dropped unanswered",
    )
    faults.add_argument(
        "--hang-rate",
        type=_rate,
        default=0.0,
        metavar="F",
        help="fraction 0-1 of requests never answered (the client's timeout ends them)",
    )
    faults.add_argument(
        "--max-in-flight",
        type=_integer(1),
        default=None,
        metavar="N",
        help="requests a cluster handles at once; more are dropped at the connection "
        "(default: no cap)",
    )
    faults.add_argument(
        "--quorum-rate",
        type=_rate,
        default=0.0,
        metavar="F",
        help="fraction 0-1 of key-server DELETEs refused with 65536600, a node out of quorum "
        "(transient; --transient-rate refuses DELETEs with 2621573, SVM locked)",
    )
    faults.add_argument(
        "--connect-delay",
        type=_milliseconds,
        default=0.0,
        metavar="MS",
        help="milliseconds, at most, a server just added shows 'unknown' on a node before "
        "'available' (a seeded 50-100%% of it per node; default 0: available at once)",
    )
    migration = p.add_argument_group("migrations: reachability and keys")
    migration.add_argument(
        "--unreachable-server",
        type=_unreachable,
        action="append",
        default=[],
        metavar="NAME[@NODE]",
        help="a key server no node reaches; NAME@CLUSTER: no node of that cluster, "
        "NAME@NODE (e.g. sim-0003-02): that node only (repeatable)",
    )
    migration.add_argument(
        "--unreplicated-server",
        type=_server,
        action="append",
        default=[],
        metavar="NAME",
        help="key managers starting with this server hold a key stored on it only, so "
        "ONTAP refuses to delete it (65536700) until a restore (repeatable)",
    )
    migration.add_argument(
        "--new-servers-empty",
        action="store_true",
        help="a server added holds no key until a restore from it (default: it is given "
        "copies of the key manager's keys, as a KMS loaded from the old one)",
    )
    files = p.add_argument_group("serving and files")
    files.add_argument(
        "--host",
        type=_host,
        default="127.0.0.1",
        help="IP address to listen on (default %(default)s)",
    )
    files.add_argument(
        "--inventory-in",
        type=Path,
        default=None,
        metavar="PATH",
        help="serve the clusters and SVMs of this inventory (YAML or TOML); with "
        "--inventory-out, write it pointed at the simulator (addresses, passwords, CA)",
    )
    files.add_argument(
        "--inventory-out",
        type=Path,
        default=None,
        metavar="PATH",
        help="write an inventory of the served fleet here, with its CA and password files",
    )
    files.add_argument(
        "--key-server",
        type=_server,
        action="append",
        default=None,
        metavar="NAME",
        help="a key server the written inventory asks for (repeatable, at most 4; default "
        "kms-new.example.com; not with --inventory-in, whose key servers are kept)",
    )
    files.add_argument(
        "--retire-server",
        type=_server,
        action="append",
        default=None,
        metavar="NAME",
        help="a server the written inventory retires (retire_servers, for `bulkkm migrate`; "
        "repeatable, at most 4; the fleet's existing servers are kms-old-N.example.com, "
        "N from 1, see --initial-servers)",
    )
    files.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="write JSON here once serving (addresses, CA, inventory, seeded trouble)",
    )
    logs = p.add_argument_group("output")
    logs.add_argument(
        "--log-format",
        choices=("json", "console"),
        help="log lines on stderr (default: console on a terminal, json otherwise)",
    )
    logs.add_argument("-v", "--verbose", action="count", default=0, help="more log lines (debug)")
    logs.add_argument(
        "-q", "--quiet", action="store_true", help="warnings and errors only; no start-up text"
    )
    return p


def _desired(args: argparse.Namespace) -> tuple[DesiredServer, ...]:
    """The key servers the written inventory asks for (``--key-server``)."""
    key_servers = args.key_server or [_DEFAULT_SERVER]
    if len(set(key_servers)) != len(key_servers) or len(key_servers) > 4:
        raise _UsageError("--key-server: at most 4 different servers")
    return tuple(DesiredServer(server=s) for s in key_servers)


def _most_desired(clusters: Sequence[Cluster]) -> int:
    """The most servers one key manager of these clusters is asked for."""
    counts = [len(c.key_servers) for c in clusters if c.cluster_scope]
    counts += [len(s.key_servers) for c in clusters for s in c.svms]
    return max(counts, default=0)


def _check_places(args: argparse.Namespace, names: Sequence[str]) -> None:
    """Refuse an ``--unreachable-server NAME@WHERE`` whose cluster or node is not served."""
    places = set(names) | {f"{name}-{n:02d}" for name in names for n in range(1, args.nodes + 1)}
    for entry in args.unreachable_server:
        where = parse_unreachable(entry)[1]
        if where is not None and where not in places:
            raise _UsageError(f"--unreachable-server {entry}: no cluster or node {where!r}")


def _spec(
    args: argparse.Namespace, *, clusters: int, most_desired: int, leaving: int = 0
) -> FleetSpec:
    """The fleet the options describe.

    ``leaving``: retired servers every key manager starts with; ``migrate`` removes them as
    the new ones come (interleaving at 4 primaries), so they make room in the clean profile.
    """
    if args.dead > clusters:
        raise _UsageError(f"--dead {args.dead} is more than the {clusters} clusters")
    clean = args.profile == "clean"
    room = most_desired - leaving
    if clean and args.initial_servers is not None and args.initial_servers + room > 4:
        retiring = f" ({leaving} of them retired)" if leaving else ""
        raise _UsageError(
            f"--initial-servers {args.initial_servers}{retiring} leaves no room for "
            f"{most_desired} new servers (4 primaries at most) in the clean profile"
        )
    headroom = most_desired if args.initial_servers is None else max(room, 0)
    faults = Faults(
        latency=args.latency,
        route_latency=_route_latencies(args),
        jitter=args.jitter,
        transient_rate=args.transient_rate,
        error500_rate=args.error500_rate,
        reset_rate=args.reset_rate,
        ambiguous_rate=args.ambiguous_rate,
        hang_rate=args.hang_rate,
        max_in_flight=args.max_in_flight,
        quorum_rate=args.quorum_rate,
        connect_delay=args.connect_delay,
    )
    dead = dataclasses.replace(faults, dead=True)
    return FleetSpec(
        clusters=clusters,
        svms=args.svms,
        seed=args.seed,
        faults=faults,
        cluster_faults={cluster_name(i): dead for i in range(args.dead)},
        job_mode=args.job_mode,
        job_delay=args.job_delay,
        host=args.host,
        initial_servers=args.initial_servers,
        headroom=headroom if clean else None,
        nodes=args.nodes,
        unreachable_servers=tuple(args.unreachable_server),
        unreplicated_servers=tuple(args.unreplicated_server),
        new_server_copies=not args.new_servers_empty,
    )


def _route_latencies(args: argparse.Namespace) -> tuple[RouteLatency, ...]:
    """``--route-latency`` entries, then ``--write-latency``, then ``--post-latency``."""
    entries = list(args.route_latency)
    if args.write_latency is not None:
        entries += write_latency(args.write_latency)
    if args.post_latency is not None:
        entries.append(RouteLatency(method="POST", route="*", seconds=args.post_latency))
    return tuple(entries)


def _read_document(path: Path) -> dict[str, object]:
    """An inventory file's data, as written (``.toml`` as TOML, anything else as YAML)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except OSError as exc:
        raise _UsageError(f"--inventory-in {path}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _UsageError(f"--inventory-in {path}: not an inventory: {problem}") from None
    if not isinstance(data, dict):
        raise _UsageError(f"--inventory-in {path}: not an inventory (no mapping at the top)")
    return {str(k): v for k, v in data.items()}


def _resolve(document: dict[str, object], *, source: Path, out: Path, password: str) -> Inventory:
    """The inventory resolved by bulkkm's loader, with secrets and CA already pointed away.

    Loaded before the fleet exists (no ports, no CA yet), so the references the user's
    environment may not satisfy (``env:``, ``file:``, CA paths) are replaced first.
    """
    login, kmip = write_secrets(out, password)
    pointed = point_at(
        document, addresses=None, ca_file=None, password=login, kmip_password=kmip, username=None
    )
    with tempfile.TemporaryDirectory(prefix="bulkkm-sim-") as tmp:
        path = Path(tmp) / "inventory.yaml"
        path.write_text(yaml.safe_dump(pointed, sort_keys=False), encoding="utf-8")
        try:
            return load_inventory(path, environ={})
        except InventoryError as exc:
            # Line numbers are those of the rewritten copy; the key path says where.
            problems = [dataclasses.replace(p, file=str(source), line=None) for p in exc.problems]
            raise _InventoryProblems(tuple(str(p) for p in problems)) from None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _Setup:
    """What to serve and what the written inventory asks for."""

    spec: FleetSpec
    layout: tuple[Layout, ...] | None
    inventory: tuple[Cluster, ...] | None
    """The clusters of ``--inventory-in``, resolved; None: the fleet's own inventory."""
    document: dict[str, object] | None
    """``--inventory-in`` as written."""
    source: Path | None = None
    desired: tuple[DesiredServer, ...] = ()
    """The key servers of the fleet's own inventory (``--key-server``)."""
    retire: tuple[str, ...] = ()
    """The servers it retires (``--retire-server``)."""
    notes: tuple[str, ...] = ()


def _setup(args: argparse.Namespace) -> _Setup:
    """Check the options together; read ``--inventory-in``."""
    if args.inventory_in is None:
        desired = _desired(args)
        clusters = 3 if args.clusters is None else args.clusters
        _check_places(args, [cluster_name(i) for i in range(clusters)])
        retire = tuple(args.retire_server or ())
        if len(set(retire)) != len(retire) or len(retire) > 4:
            raise _UsageError("--retire-server: at most 4 different servers")
        if set(retire) & {d.server for d in desired}:
            raise _UsageError("--retire-server: a server cannot be both asked for and retired")
        initial = {_old_server(n) for n in range(1, (args.initial_servers or 0) + 1)}
        leaving = len(initial & set(retire))
        spec = _spec(args, clusters=clusters, most_desired=len(desired), leaving=leaving)
        return _Setup(
            spec=spec, layout=None, inventory=None, document=None, desired=desired, retire=retire
        )
    for given, option in (
        (args.clusters, "--clusters"),
        (args.key_server, "--key-server"),
        (args.retire_server, "--retire-server"),
    ):
        if given is not None:
            raise _UsageError(f"{option} is not used with --inventory-in (the inventory says)")
    if args.inventory_out is None:
        raise _UsageError("--inventory-in needs --inventory-out (where to write it pointed here)")
    document = _read_document(args.inventory_in)
    out = args.inventory_out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    inventory = _resolve(document, source=args.inventory_in, out=out, password=FleetSpec().password)
    if not inventory.clusters:
        raise _UsageError(f"--inventory-in {args.inventory_in}: no clusters")
    layout = tuple(layout_of(c, generic=args.svms) for c in inventory.clusters)
    _check_places(args, [c.name for c in layout])
    spec = _spec(args, clusters=len(layout), most_desired=_most_desired(inventory.clusters))
    return _Setup(
        spec=spec,
        layout=layout,
        inventory=inventory.clusters,
        document=document,
        source=args.inventory_in,
        notes=_notes(inventory),
    )


def _old_server(number: int) -> str:
    """The name of a key manager's ``number``-th server at start (``kms-old-N``), normalised."""
    return normalize_server(f"kms-old-{number}.example.com")


def _own_inventory(
    fleet: SimulatedFleet, desired: tuple[DesiredServer, ...], retire: tuple[str, ...]
) -> tuple[Cluster, ...]:
    """The clusters of the inventory the fleet writes of itself (``svms: all``, cluster scope)."""
    everything = SvmSelector(
        kind=SelectorKind.ALL, pattern="all", key_servers=desired, retire_servers=retire
    )
    return tuple(
        Cluster(
            name=c.name,
            host="127.0.0.1",
            svms=(everything,),
            cluster_scope=True,
            key_servers=desired,
            retire_servers=retire,
        )
        for c in fleet.clusters
    )


def _count(number: int, noun: str, plural: str | None = None) -> str:
    """``1 target``, ``2 targets``."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def _trouble_lines(trouble: Trouble, profile: str) -> list[str]:
    """What keeps the written inventory from exit 0, one line per cause with its outcome."""
    blocked = trouble.blocked
    lines: list[str] = []

    def add(cause: str, reason: str) -> None:
        lines.append(f"  {cause} -> {_count(blocked[reason], 'target')} blocked {reason}")

    if trouble.full_key_managers:
        add(
            f"{_count(trouble.full_key_managers, 'key manager')} too full for the servers "
            "to add (ONTAP allows 4 primaries)",
            "too_many_servers",
        )
    if trouble.not_external:
        add(
            _count(trouble.not_external, "cluster scope or named SVM", _NOT_EXTERNAL)
            + " with onboard key management or none",
            "no_external_key_manager",
        )
    if trouble.old_clusters:
        add(
            f"{_count(trouble.old_clusters, 'cluster')} before ONTAP 9.8 asked for "
            "secondary key servers",
            "ontap_too_old",
        )
    if blocked.get("svm_not_found"):
        add("SVMs named but not on their cluster", "svm_not_found")
    if trouble.dead:
        shown = ", ".join(trouble.dead[:_SHOWN]) + (" ..." if len(trouble.dead) > _SHOWN else "")
        lines.append(f"  {_count(len(trouble.dead), 'dead cluster')} (--dead): {shown}")
    if lines:
        why = "seeded on purpose" if profile == "default" else "from your options"
        lines.insert(0, f"{why}, so apply of this inventory exits 1:")
    if trouble.skipped_svms:
        lines.append(
            f"  ({_count(trouble.skipped_svms, 'SVM')} with onboard key management or none: "
            "`all` and globs skip them, no targets)"
        )
    if profile == "default" and blocked:
        lines.append("  run with --clean for a fleet whose inventory applies with exit 0")
    elif not trouble:
        lines.append(f"profile {profile}: nothing seeded that blocks a target")
    if trouble.interleaved:
        lines.append(
            f"  ({_count(trouble.interleaved, 'key manager')} fit the new servers only as "
            "retired ones go: migrate interleaves; apply, which never removes, blocks them "
            "too_many_servers)"
        )
    return lines


def _notes(inventory: Inventory) -> tuple[str, ...]:
    """What in ``--inventory-in`` will hold an apply back, kept as written."""
    notes: list[str] = []
    windowed = [c.name for c in inventory.clusters if c.window is not None]
    if windowed:
        notes.append(
            f"note: {_count(len(windowed), 'cluster')} have maintenance windows; apply changes "
            "them only inside (apply --ignore-windows to try now)"
        )
    pause = inventory.rollout.pause_between_waves
    if inventory.rollout.waves and pause:
        notes.append(
            f"note: the rollout pauses {pause:g} s between waves "
            "(apply --pause-between-waves 0 to go on at once)"
        )
    return tuple(notes)


def _migration_lines(spec: FleetSpec) -> list[str]:
    """What the options seeded for migrations, one line each."""
    lines = [f"unreachable: {entry}" for entry in spec.unreachable_servers]
    lines += [
        f"unreplicated: {server} holds a key no other server has (DELETE refused, 65536700)"
        for server in spec.unreplicated_servers
    ]
    if not spec.new_server_copies:
        lines.append("new servers start empty: removing the last old one needs a restore first")
    return lines


def _table(fleet: SimulatedFleet) -> str:
    """Where each cluster listens: all of them, or the first few and a count."""
    clusters = fleet.clusters
    shown = clusters if len(clusters) <= 20 else clusters[:_SHOWN]
    width = max(len(c.name) for c in shown)
    lines = [
        f"  {c.name:<{width}}  {c.address:<22} ONTAP {c.version:<7} {len(c.svms)} SVMs"
        f"{'  (dead)' if c.faults.dead else ''}"
        for c in shown
    ]
    if len(shown) < len(clusters):
        lines.append(f"  ... and {len(clusters) - len(shown)} more, to {clusters[-1].address}")
    return "\n".join(lines)


def _write_ready(path: Path, document: dict[str, object]) -> None:
    """Write the ready file whole (via a rename), so a watcher never reads half of it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


def _write_inventory(fleet: SimulatedFleet, setup: _Setup, out: Path) -> Path:
    """Write the fleet's inventory: the one given, pointed here, or the fleet's own."""
    if setup.document is not None:
        return fleet.write_adapted_inventory(setup.document, out, source=str(setup.source))
    retire = {"retire_servers": list(setup.retire)} if setup.retire else None
    return fleet.write_inventory(
        out, key_servers=tuple(d.server for d in setup.desired), extra_defaults=retire
    )


async def _serve(args: argparse.Namespace, setup: _Setup) -> int:
    """Serve the fleet until SIGINT or SIGTERM."""
    spec = setup.spec
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with SimulatedFleet(spec, layout=setup.layout) as fleet:
        inventory = None
        ca_file = fleet.ca_file
        if args.inventory_out is not None:
            inventory = _write_inventory(fleet, setup, args.inventory_out)
            ca_file = inventory.with_name(f"{inventory.stem}-ca.pem")
        wanted = setup.inventory or _own_inventory(fleet, setup.desired, setup.retire)
        trouble = seeded_trouble(fleet.clusters, wanted)
        svms = sum(len(c.svms) for c in fleet.clusters)
        log.info(
            "simulator_serving",
            clusters=len(fleet.clusters),
            svms=svms,
            profile=args.profile,
            seed=spec.seed,
            ca_file=str(ca_file),
            inventory=None if inventory is None else str(inventory),
            blocked=dict(trouble.blocked),
        )
        for cluster in fleet.clusters:
            log.debug(
                "simulated_cluster",
                cluster=cluster.name,
                address=cluster.address,
                version=cluster.version,
                svms=[svm.name for svm in cluster.svms],
                dead=cluster.faults.dead,
            )
        if not args.quiet:
            origin = f" from {args.inventory_in}" if args.inventory_in is not None else ""
            print(
                f"{_PROG}: {len(fleet.clusters)} clusters{origin}, {svms} SVMs "
                f"(profile {args.profile}, seed {spec.seed})"
            )
            print(_table(fleet))
            print(f"CA: {ca_file}")
            for line in _migration_lines(spec):
                print(line)
            if inventory is not None:
                print(f"inventory: {inventory}")
            for line in (*_trouble_lines(trouble, args.profile), *setup.notes):
                print(line)
            print("serving; Ctrl-C to stop", flush=True)
        if args.ready_file is not None:
            _write_ready(
                args.ready_file,
                {
                    "clusters": [{"name": c.name, "address": c.address} for c in fleet.clusters],
                    "ca_file": str(ca_file),
                    "inventory": None if inventory is None else str(inventory),
                    "profile": args.profile,
                    "blocked": dict(trouble.blocked),
                },
            )
        await stop.wait()
        log.info(
            "simulator_stopped",
            requests=len(fleet.request_log),
            key_server_writes=len(fleet.write_log),
        )
    return 0


def main(argv: list[str]) -> int:
    """Run ``bulkkm simulate`` with ``argv`` (the arguments after ``simulate``)."""
    try:
        args = _parser().parse_args(argv)
    except _UsageError as exc:
        print(f"{_PROG}: error: {exc} (see {_PROG} --help)", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    try:
        setup = _setup(args)
    except _UsageError as exc:
        print(f"{_PROG}: error: {exc} (see {_PROG} --help)", file=sys.stderr)
        return 2
    except _InventoryProblems as exc:
        for problem in exc.problems:
            print(printable(problem), file=sys.stderr)
        return 2
    # Only now: a refused command line leaves the process's logging as it was.
    configure_logging(fmt=args.log_format, verbosity=-1 if args.quiet else args.verbose)
    try:
        return asyncio.run(_serve(args, setup))
    except OSError as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        return 0
