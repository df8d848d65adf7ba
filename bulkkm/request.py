"""A run as plain data (``RunRequest``), and everything checked before it may start (``prepare``).

The command line builds a ``RunRequest`` from its arguments; a service can store one as
JSON and a remote worker receive it. Runtime hooks (the wave prompt, the clock) stay out of
it: ``prepare`` takes them. ``prepare`` loads and checks the inventory, a saved plan and a
resumed report, resolves options against the inventory's ``rollout:``, and opens every
output; any mistake is a ``UsageError`` (or an inventory or report error) before a single
request is sent.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import structlog

from bulkkm import collector
from bulkkm.errors import UsageError
from bulkkm.events import WaveFinished
from bulkkm.inventory import Inventory, ReadAhead, Rollout, load_inventory, read_ahead
from bulkkm.planfile import PlanWriter, SavedPlan, read_plan
from bulkkm.report import ReportWriter, load_resume
from bulkkm.rollout import WaveSize, check_order, parse_waves

if TYPE_CHECKING:
    from bulkkm import engine

__all__ = ["COMMANDS", "ConfirmWave", "PreparedRun", "RunRequest", "load", "prepare"]

T = TypeVar("T")
COMMANDS: Final = frozenset({"plan", "check", "apply", "migrate"})
"""The engine's commands (``engine.Command``), named here so that a request can be checked
without importing the engine (a test keeps them equal)."""
log = structlog.get_logger("bulkkm")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunRequest:
    """What to run, on which inventory, with which options: JSON-able, no live object."""

    command: str
    """``plan``, ``check``, ``apply`` or ``migrate``."""
    inventory: str | None = None
    """The inventory file (``None`` with ``plan``: the saved plan names it)."""
    plan: str | None = None
    """A saved plan to execute (``apply --plan``)."""
    report: str | None = None
    out: str | None = None
    """Where ``plan`` saves an approvable plan."""
    overwrite: bool = False
    limit: tuple[str, ...] = ()
    resume: str | None = None
    dry_run: bool = False
    max_failures: int | None = None
    max_fail_percent: float | None = None
    waves: str | None = None
    """Wave sizes as written (``1,10%,100%``)."""
    wave_order: str | None = None
    pause_between_waves: float | None = None
    confirm_waves: bool = False
    ignore_windows: bool = False
    verify_timeout: float | None = None
    """``migrate``: seconds the new servers have to become reachable (default 300)."""
    verify_keys: bool = False
    max_connections: int | None = None
    """Connections open at once across clusters (default: sized for the machine)."""

    def __post_init__(self) -> None:
        """Refuse a command bulkkm does not know, and a budget of no connection."""
        if self.command not in COMMANDS:
            raise UsageError(f"unknown command {self.command!r} (one of {sorted(COMMANDS)})")
        if self.max_connections is not None and self.max_connections < 1:
            raise UsageError("max_connections must be 1 or more")

    def flags(self) -> tuple[str, ...]:
        """The options that shape this run, as command-line flags (``--plan P --waves 1,10%``).

        What the command that finishes the run must repeat to run the same way: an approved
        plan, waves, thresholds, ``--limit``... Not the files of this one run (its report,
        the report it resumed) nor the inventory (the command's argument).
        """
        flags: list[str] = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in _OF_THIS_RUN or value == field.default:
                continue
            flag = "--" + field.name.replace("_", "-")
            if value is True:
                flags.append(flag)
                continue
            for item in value if isinstance(value, tuple) else (value,):
                text = _flag_value(item)
                # ``--limit -x`` would read as another option: ``--limit=-x`` cannot.
                flags += [f"{flag}={text}"] if text.startswith("-") else [flag, text]
        return tuple(flags)

    def to_json(self) -> dict[str, object]:
        """The request as a JSON object (only fields that differ from their default)."""
        body: dict[str, object] = {"command": self.command}
        for field in dataclasses.fields(self)[1:]:
            value = getattr(self, field.name)
            if value != field.default:
                body[field.name] = list(value) if isinstance(value, tuple) else value
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, object]) -> RunRequest:
        """A request read back from JSON; UsageError naming the first field that is wrong."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(body) - set(fields))
        if unknown:
            raise UsageError(f"run request: unknown field {unknown[0]!r}")
        values = {name: _field(name, value) for name, value in body.items()}
        if "command" not in values:
            raise UsageError("run request: command is missing")
        return cls(**values)  # type: ignore[arg-type]


_OF_THIS_RUN: Final = frozenset({"command", "inventory", "report", "out", "overwrite", "resume"})
"""Request fields that ``RunRequest.flags`` leaves out: the command, and this run's files."""


def _flag_value(value: object) -> str:
    """A flag's value as typed: ``5`` for 5.0, every digit of any other number."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _field(name: str, value: object) -> object:
    """One field of a request read back, checked against its type."""
    expected = _TYPES[name]
    if name == "limit" and isinstance(value, list):
        if not all(isinstance(glob, str) for glob in value):
            raise UsageError("run request: limit must be a list of strings")
        return tuple(value)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    wrong_bool = isinstance(value, bool) and expected is not bool
    if value is not None and (wrong_bool or not isinstance(value, expected)):
        raise UsageError(f"run request: {name} must be {_KINDS[expected]}")
    return value


_KINDS: Final[dict[type, str]] = {
    str: "a string",
    bool: "true or false",
    int: "a whole number",
    float: "a number",
    tuple: "a list of strings",
}
"""How an error names each type a request field takes (not Python's names)."""
_TYPES: Final[dict[str, type]] = {
    "command": str,
    "inventory": str,
    "plan": str,
    "report": str,
    "out": str,
    "overwrite": bool,
    "limit": tuple,
    "resume": str,
    "dry_run": bool,
    "max_failures": int,
    "max_fail_percent": float,
    "waves": str,
    "wave_order": str,
    "pause_between_waves": float,
    "confirm_waves": bool,
    "ignore_windows": bool,
    "verify_timeout": float,
    "verify_keys": bool,
    "max_connections": int,
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PreparedRun:
    """A request made ready: inputs loaded and checked, outputs open, nothing sent."""

    request: RunRequest
    inventory: Inventory
    """The whole inventory."""
    clusters: Inventory
    """The clusters this run contacts (``--limit``, a saved plan's)."""
    options: engine.Options
    report: ReportWriter | None
    plan_writer: PlanWriter | None


ConfirmWave = Callable[[WaveFinished], Awaitable[bool]]


def prepare(
    request: RunRequest,
    *,
    confirm_wave: ConfirmWave | None = None,
    clock: Callable[[], datetime] | None = None,
    parse_ahead: bool = False,
) -> PreparedRun:
    """Check everything a run needs and open its outputs; raise before anything is sent.

    ``confirm_wave`` is asked between waves when the request says ``confirm_waves``.
    ``parse_ahead``: parse the inventory's YAML in a child process while the engine is
    imported (a command line's start, where the engine is not imported yet).
    """
    with collector.paused():
        return _prepare(request, confirm_wave=confirm_wave, clock=clock, parse_ahead=parse_ahead)


def _prepare(
    request: RunRequest,
    *,
    confirm_wave: ConfirmWave | None,
    clock: Callable[[], datetime] | None,
    parse_ahead: bool,
) -> PreparedRun:
    """``prepare``'s work."""
    saved = read_plan(Path(request.plan)) if request.plan is not None else None
    if saved is not None and saved.not_discovered:
        log.warning(
            "plan_incomplete",
            not_discovered=len(saved.not_discovered),
            message="the plan does not cover clusters it could not discover when it was made "
            "(plan --show lists them); nothing is done to them",
        )
    path = _inventory_path(request, saved)
    with read_ahead(path) if parse_ahead else contextlib.nullcontext() as ahead:
        # Imported here, while a child parses the inventory (~0.2 s on a command line's
        # start, where nothing imported it yet); the options below need it anyway.
        import bulkkm.engine  # noqa: F401, PLC0415

        inventory = _inventory_for(path, saved, ahead)
    clusters = inventory.filter(request.limit)
    if saved is not None:
        # The plan names its clusters: a set lookup, not each name tried as a glob per cluster.
        clusters = clusters.only(saved.changed_clusters)
    if request.limit and not clusters.clusters:
        raise UsageError(f"--limit {' '.join(request.limit)} matches no cluster of the inventory")
    options = _options(request, inventory, clusters, saved, confirm_wave=confirm_wave)
    if clock is not None:
        options = dataclasses.replace(options, clock=clock)
    # Every output is checked and opened now, before a single request: a bad path costs
    # nothing, and no run can overwrite what it reads.
    resumed = _path(request.resume)
    inputs = [inventory.path, *_paths(request.resume, request.plan)]
    report = None
    if request.report is not None:
        report = ReportWriter.create(
            Path(request.report),
            overwrite=request.overwrite,
            inputs=inputs,
            resumed_from_report=resumed,
        )
    plan_writer = None
    if request.out is not None:
        plan_writer = PlanWriter.create(
            Path(request.out),
            inventory,
            options.clock(),
            overwrite=request.overwrite,
            inputs=[*inputs, *_paths(request.report)],
        )
    return PreparedRun(
        request=request,
        inventory=inventory,
        clusters=clusters,
        options=options,
        report=report,
        plan_writer=plan_writer,
    )


def load(path: Path, ahead: ReadAhead | None = None) -> Inventory:
    """An inventory, loaded and checked; its warnings go to the log on every run."""
    inventory = load_inventory(path, ahead=ahead)
    for warning in inventory.warnings:
        log.warning("inventory_warning", message=warning)
    return inventory


def _inventory_path(request: RunRequest, saved: SavedPlan | None) -> Path:
    """The inventory named by the request or by its plan."""
    if request.inventory is not None:
        return Path(request.inventory)
    if saved is None:
        raise UsageError("an INVENTORY is needed (or --plan PLAN for apply, --show PLAN for plan)")
    return saved.inventory


def _inventory_for(path: Path, saved: SavedPlan | None, ahead: ReadAhead | None) -> Inventory:
    """The inventory at ``path``, checked against the plan."""
    inventory = load(path, ahead)
    if saved is not None and inventory.sha256 != saved.inventory_sha256:
        raise UsageError(
            f"{inventory.path} changed since the plan was made (sha256 differs); make a new plan"
        )
    return inventory


def _options(
    request: RunRequest,
    inventory: Inventory,
    clusters: Inventory,
    saved: SavedPlan | None,
    *,
    confirm_wave: ConfirmWave | None,
) -> engine.Options:
    """The engine's options from the request, then the inventory's ``rollout:``."""
    from bulkkm import engine  # noqa: PLC0415 -- see _prepare

    writes = engine.Command(request.command).writes
    # Waves, pauses and thresholds shape a rollout's writes; plan and check read everything.
    rollout = inventory.rollout if writes else Rollout()
    resume = None
    if request.resume is not None:
        resume = load_resume(Path(request.resume))
        if resume.inventory_sha256 != inventory.sha256:
            log.warning(
                "resume_from_other_inventory",
                report=request.resume,
                message="the report was made from another inventory (sha256 differs); "
                "only targets the clusters confirm are carried over",
            )
    waves = _waves(request.waves) if request.waves is not None else rollout.waves
    order = request.wave_order or rollout.wave_order or "inventory"
    try:
        check_order(order)
    except ValueError as exc:
        raise UsageError(f"--wave-order: {exc}") from None
    if waves is None:
        for flag, given in (
            ("--pause-between-waves", request.pause_between_waves is not None),
            ("--confirm-waves", request.confirm_waves),
        ):
            if given:
                raise UsageError(
                    f"{flag} needs waves (--waves SIZES, or waves: under rollout: in the inventory)"
                )
    if request.confirm_waves and confirm_wave is None:
        raise UsageError("--confirm-waves needs someone to ask, and there is none")
    return engine.Options(
        command=engine.Command(request.command),
        dry_run=request.dry_run,
        max_failures=_first(request.max_failures, rollout.max_failures),
        max_fail_percent=_first(request.max_fail_percent, rollout.max_fail_percent),
        resume=resume,
        approved=saved.approved() if saved is not None else None,
        waves=waves,
        wave_order=order,
        pause_between_waves=_first(request.pause_between_waves, rollout.pause_between_waves) or 0.0,
        confirm_wave=confirm_wave if request.confirm_waves else None,
        ignore_windows=request.ignore_windows,
        verify_timeout=300.0 if request.verify_timeout is None else request.verify_timeout,
        verify_keys=request.verify_keys,
        max_connections=request.max_connections,
        skipped_clusters=_left_out(inventory, clusters),
        flags=request.flags(),
    )


def _left_out(inventory: Inventory, clusters: Inventory) -> tuple[str, ...]:
    """The clusters of ``inventory`` not in ``clusters``, by name (a set: linear at 10,000)."""
    if clusters is inventory:
        return ()
    kept = {c.name for c in clusters.clusters}
    return tuple(c.name for c in inventory.clusters if c.name not in kept)


def _waves(text: str) -> tuple[WaveSize, ...]:
    """``--waves`` parsed, or a UsageError."""
    try:
        return parse_waves(text)
    except ValueError as exc:
        raise UsageError(f"--waves: {exc}") from None


def _first(*values: T | None) -> T | None:
    """The first value that is not None."""
    return next((v for v in values if v is not None), None)


def _path(text: str | None) -> Path | None:
    """A path that may be absent."""
    return None if text is None else Path(text)


def _paths(*texts: str | None) -> list[Path]:
    """The paths given, the absent left out."""
    return [Path(t) for t in texts if t is not None]
