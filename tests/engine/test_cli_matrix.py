"""Every command with its rollout and resume options, piped and on a terminal, JSON and console.

Each run is checked as a user would: no traceback, no secret, JSON log lines that parse when
logs are JSON and piped, and every report it wrote holds every promise (``tests.invariants``).
By default each command runs piped with JSON logs plus one other (terminal, format,
verbosity) combination, so that every combination is covered; ``BULKKM_FULL_MATRIX=1`` runs
every command in every combination.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from pathlib import Path
from typing import Any

import orjson

from bulkkm.inventory import load_inventory
from bulkkm.simulator import Faults, SimulatedFleet
from tests.cli import Result, bulkkm, on_terminal, read_report
from tests.engine.conftest import fleet_spec
from tests.invariants import check_invariants, check_report

PASSWORD = "SENTINEL-matrix-pw-51d3"
KMIP_PASSWORD = "SENTINEL-matrix-kmip-9e07"
ENV = {"KMIP_PW": KMIP_PASSWORD}


@dataclasses.dataclass(frozen=True, slots=True)
class Case:
    """One command line; ``{inv}``, ``{report}``, ``{plan}`` and ``{previous}`` are filled in."""

    name: str
    args: tuple[str, ...]
    codes: frozenset[int]
    writes_report: bool = False


CASES = (
    Case("validate", ("validate", "{inv}"), frozenset({0})),
    Case("schema", ("schema",), frozenset({0})),
    Case("plan", ("plan", "{inv}", "--report", "{report}"), frozenset({0, 1}), True),
    Case("plan --out", ("plan", "{inv}", "--out", "{plan}"), frozenset({0, 1})),
    Case("plan --show", ("plan", "--show", "{plan}"), frozenset({0})),
    Case("plan --limit", ("plan", "{inv}", "--limit", "sim-0001"), frozenset({0, 1})),
    Case("check", ("check", "{inv}", "--report", "{report}"), frozenset({0, 1, 4}), True),
    Case(
        "apply --dry-run",
        ("apply", "{inv}", "--report", "{report}", "--dry-run"),
        frozenset({0, 1}),
        True,
    ),
    Case(
        "apply --plan",
        ("apply", "--plan", "{plan}", "--report", "{report}"),
        frozenset({0, 1}),
        True,
    ),
    Case(
        "apply --waves",
        (
            "apply",
            "{inv}",
            "--report",
            "{report}",
            "--waves",
            "1,50%,100%",
            "--max-fail-percent",
            "100",
        ),
        frozenset({0, 1}),
        True,
    ),
    Case(
        "apply --limit",
        ("apply", "{inv}", "--report", "{report}", "--limit", "sim-000[01]"),
        frozenset({0, 1}),
        True,
    ),
    Case(
        "apply --resume",
        ("apply", "{inv}", "--report", "{report}", "--resume", "{previous}"),
        frozenset({0, 1}),
        True,
    ),
    Case("report summarize", ("report", "summarize", "{previous}"), frozenset({0, 1})),
    Case(
        "report summarize --json",
        ("report", "summarize", "{previous}", "--json"),
        frozenset({0, 1}),
    ),
)
MODES = tuple(itertools.product((False, True), ("json", "console"), ((), ("-v",), ("-q",))))
"""(on a terminal, log format, verbosity flags)."""


def combinations() -> list[tuple[Case, tuple[bool, str, tuple[str, ...]]]]:
    """The runs: all of them with BULKKM_FULL_MATRIX=1, else a covering subset."""
    if os.environ.get("BULKKM_FULL_MATRIX"):
        return [(case, mode) for case in CASES for mode in MODES]
    runs = [(case, MODES[0]) for case in CASES]
    others = itertools.cycle(MODES[1:])
    runs += [(case, next(others)) for case in CASES]
    return runs


def planned(path: Path) -> set[tuple[str, str | None, str]]:
    """The targets a saved plan adds: an ``apply --plan`` run's targets."""
    body = orjson.loads(path.read_bytes())
    return {
        (cluster["name"], km["svm"], server)
        for cluster in body["clusters"]
        for km in cluster["key_managers"]
        for server in km["add"]
    }


def check_output(result: Result, *, terminal: bool, fmt: str, case: Case) -> None:
    """What a user must never see, and JSON logs that parse."""
    text = result.text
    assert "Traceback" not in text, f"{case.name}: {text[-2000:]}"
    assert PASSWORD not in text, case.name
    assert KMIP_PASSWORD not in text, case.name
    assert result.code in case.codes, f"{case.name}: exit {result.code}\n{text[-2000:]}"
    if not terminal and fmt == "json":
        for line in result.err.splitlines():
            if line.strip():
                assert isinstance(orjson.loads(line), dict), f"{case.name}: {line!r}"


async def test_every_command_in_every_mode_keeps_its_promises(tmp_path: Path) -> None:
    """The matrix: no traceback, no secret, JSON logs parse, every report holds every invariant."""
    spec = fleet_spec(
        clusters=4,
        svms=2,
        seed=8,
        initial_servers=0,
        password=PASSWORD,
        faults=Faults(transient_rate=0.1, ambiguous_rate=0.05),
    )
    async with SimulatedFleet(spec) as fleet:
        server = {"server": "kms-new.example.com", "password": "env:KMIP_PW"}
        inventory = fleet.write_inventory(
            tmp_path / "fleet.yaml", key_servers=(server, "kms-two.example.com")
        )
        loaded = load_inventory(inventory, environ=ENV)
        plan = tmp_path / "plan.json"
        previous: Path | None = None
        for number, (case, (terminal, fmt, verbosity)) in enumerate(combinations()):
            report = tmp_path / f"r{number}.jsonl"
            if case.name == "plan --out":
                plan = tmp_path / f"plan{number}.json"
            fill = {
                "{inv}": str(inventory),
                "{report}": str(report),
                "{plan}": str(plan),
                "{previous}": str(previous),
            }
            args = [fill.get(a, a) for a in case.args]
            args += ["--log-format", fmt, *verbosity]
            if case.name == "schema" or case.name.startswith("report"):
                args = [a for a in args if a not in ("-v", "-q")] + list(verbosity)
            before = fleet.state()
            writes = len(fleet.write_log)
            run = on_terminal if terminal else bulkkm
            result = await run(*args, env=ENV)
            check_output(result, terminal=terminal, fmt=fmt, case=case)
            if case.writes_report:
                lines: list[dict[str, Any]] = read_report(report)
                print(case.name, terminal, fmt, verbosity)  # shown when a check fails
                check_report(lines)
                check_invariants(
                    inventory=loaded,
                    before=before,
                    after=fleet.state(),
                    writes=fleet.write_log[writes:],
                    report=lines,
                    expected=planned(plan) if case.name == "apply --plan" else None,
                )
                previous = report
