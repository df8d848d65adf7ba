"""A run as plain data, and what ``prepare`` refuses before anything is sent."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkkm.engine import Command
from bulkkm.errors import UsageError
from bulkkm.events import WaveFinished
from bulkkm.request import COMMANDS, RunRequest, prepare

INVENTORY = """\
    version: 1
    defaults:
      username: admin
      password: env:TEST_ONTAP_PASSWORD
      key_servers: [kms.example.com]
      svms: all
    rollout:
      waves: [1, "100%"]
      max_failures: 3
    clusters:
      - {name: paris-01, address: 10.0.0.1}
      - {name: paris-02, address: 10.0.0.2}
      - {name: lyon-01, address: 10.0.0.3}
"""


@pytest.fixture
def inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A three-cluster inventory with rollout waves, its secret in the environment."""
    monkeypatch.setenv("TEST_ONTAP_PASSWORD", "not-a-real-one")
    path = tmp_path / "fleet.yaml"
    path.write_text(textwrap.dedent(INVENTORY))
    return path


def test_the_commands_a_request_takes_are_the_engine_s() -> None:
    """``COMMANDS`` (checked without importing the engine) names exactly its commands."""
    assert {c.value for c in Command} == COMMANDS


async def never(_: WaveFinished) -> bool:
    """A wave prompt nobody answers yes."""
    return False


requests = st.builds(
    RunRequest,
    command=st.sampled_from(("plan", "check", "apply")),
    inventory=st.none() | st.text(min_size=1, max_size=20),
    report=st.none() | st.text(min_size=1, max_size=20),
    limit=st.lists(st.text(max_size=8), max_size=3).map(tuple),
    dry_run=st.booleans(),
    max_failures=st.none() | st.integers(0, 1000),
    max_fail_percent=st.none() | st.floats(0, 100),
    waves=st.none() | st.just("1,10%,100%"),
    pause_between_waves=st.none() | st.floats(0, 60),
)


@given(requests)
def test_a_request_survives_json(request: RunRequest) -> None:
    """What a service stores and a worker receives is the request itself."""
    assert RunRequest.from_json(orjson.loads(orjson.dumps(request.to_json()))) == request


names = st.from_regex(r"[a-z][a-z0-9_.-]{0,10}", fullmatch=True)
shaped = st.builds(
    RunRequest,
    command=st.sampled_from(("apply", "migrate")),
    plan=st.none() | names,
    # "--" alone is argparse's end of options, even as --limit=--: no glob to give.
    limit=st.lists(
        st.from_regex(r"[-a-z0-9*?]{1,8}", fullmatch=True).filter(lambda g: g != "--"),
        max_size=3,
    ).map(tuple),
    dry_run=st.booleans(),
    max_failures=st.none() | st.integers(0, 1000),
    max_fail_percent=st.none() | st.floats(0, 100),
    waves=st.none() | st.sampled_from(("1,10%,100%", "2,100%", "50%")),
    wave_order=st.none() | st.sampled_from(("inventory", "name", "random:7")),
    pause_between_waves=st.none() | st.floats(0, 3600),
    confirm_waves=st.booleans(),
    ignore_windows=st.booleans(),
    max_connections=st.none() | st.integers(1, 10_000),
)


@given(shaped)
def test_a_request_s_flags_give_it_back_through_the_command_line(request: RunRequest) -> None:
    """``flags`` (what "to finish the job" repeats) parse back to the same options, whatever
    they are: a glob that starts with a dash, a percentage with many digits."""
    from bulkkm import cli  # noqa: PLC0415 -- the parser, as a person's command line meets it

    argv = [request.command, "fleet.yaml", *request.flags(), "--report", "r.jsonl"]
    again = cli._request(cli._parser().parse_args(argv))
    assert again == dataclasses.replace(request, inventory="fleet.yaml", report="r.jsonl")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"command": "destroy"}, "unknown command"),
        ({"inventory": "f.yaml"}, "command is missing"),
        ({"command": "apply", "force": True}, "unknown field 'force'"),
        ({"command": "apply", "dry_run": "yes"}, "dry_run must be true or false"),
        ({"command": "apply", "max_failures": True}, "max_failures must be a whole number"),
        ({"command": "apply", "limit": 5}, "limit must be a list of strings"),
        ({"command": "apply", "waves": 3}, "waves must be a string"),
        ({"command": "apply", "max_fail_percent": "5"}, "max_fail_percent must be a number"),
        ({"command": "apply", "limit": [1, 2]}, "limit must be a list of strings"),
    ],
)
def test_a_malformed_request_is_refused_by_name(body: dict[str, object], message: str) -> None:
    """A stored request that is wrong says which field is."""
    with pytest.raises(UsageError, match=message):
        RunRequest.from_json(body)


def test_waves_and_thresholds_shape_apply_only(inventory: Path) -> None:
    """plan and check look at every cluster: the inventory's rollout applies to writes."""
    apply = prepare(RunRequest(command="apply", inventory=str(inventory)))
    assert apply.options.waves is not None
    assert apply.options.max_failures == 3
    for command in ("plan", "check"):
        read = prepare(RunRequest(command=command, inventory=str(inventory)))
        assert read.options.waves is None
        assert read.options.max_failures is None


def test_the_command_line_wins_over_the_inventory(inventory: Path) -> None:
    """--waves and --max-failures replace the inventory's rollout settings."""
    run = prepare(
        RunRequest(command="apply", inventory=str(inventory), waves="50%,100%", max_failures=0)
    )
    assert [str(w) for w in run.options.waves or ()] == ["50%", "100%"]
    assert run.options.max_failures == 0


def test_limit_leaves_the_other_clusters_out(inventory: Path) -> None:
    """--limit keeps matching clusters; the others are the run's skipped clusters."""
    run = prepare(RunRequest(command="plan", inventory=str(inventory), limit=("paris-*",)))
    assert [c.name for c in run.clusters.clusters] == ["paris-01", "paris-02"]
    assert run.options.skipped_clusters == ("lyon-01",)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"limit": ("nowhere-*",)}, "matches no cluster"),
        ({"waves": "10%,5%"}, "--waves"),
        ({"wave_order": "shuffled"}, "--wave-order"),
        ({"command": "plan", "pause_between_waves": 5.0}, "needs waves"),
        ({"confirm_waves": True}, "needs someone to ask"),
    ],
)
def test_what_cannot_run_is_refused_before_anything_is_opened(
    inventory: Path, fields: dict[str, object], message: str
) -> None:
    """Usage mistakes are UsageErrors from prepare, and no report is created."""
    report = inventory.with_name("r.jsonl")
    body: dict[str, object] = {"command": "apply", "inventory": str(inventory)}
    body.update(fields)
    with pytest.raises(UsageError, match=message):
        prepare(RunRequest.from_json({**body, "report": str(report)}))
    assert not report.exists()


def test_a_prompt_is_used_only_when_the_request_asks(inventory: Path) -> None:
    """confirm_waves with a hook: the engine gets the hook; without the flag, it does not."""
    asked = prepare(
        RunRequest(command="apply", inventory=str(inventory), confirm_waves=True),
        confirm_wave=never,
    )
    assert asked.options.confirm_wave is never
    plain = prepare(RunRequest(command="apply", inventory=str(inventory)), confirm_wave=never)
    assert plain.options.confirm_wave is None
