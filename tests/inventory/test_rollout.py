"""``window:``, ``wave:`` and ``rollout:``: what they resolve to, and how windows stack.

A window is one value: the most specific layer that writes ``window:`` gives all of it
(``null`` removes it); ``wave:`` is inherited from groups, never from defaults. Each
mistake these keys can hold, with its line and key path, is a case in ``test_problems``.
"""

from __future__ import annotations

from datetime import time

import pytest

from bulkkm.inventory import Cluster, Rollout, describe
from bulkkm.rollout import WaveSize, Window
from tests.inventory.conftest import Write, load, problems_of

HEAD = """\
version: 1
defaults:
  username: admin
  password: env:ONTAP_PASSWORD
  key_servers: [kms1.example.com]
"""
ONE = "clusters: [{name: c1, address: h1, svms: all}]\n"
WEEKEND = '{days: [sat, sun], start: "01:00", end: "05:00", tz: Europe/Paris}'
FRIDAY_NIGHT = '{days: [fri], start: "22:00", end: "02:00", tz: America/New_York}'
WEDNESDAY = '{days: [wed], start: "12:00", end: "13:00", tz: UTC}'

WEEKEND_WINDOW = Window(days=frozenset({5, 6}), start=time(1), end=time(5), tz="Europe/Paris")
FRIDAY_NIGHT_WINDOW = Window(
    days=frozenset({4}), start=time(22), end=time(2), tz="America/New_York"
)
WEDNESDAY_WINDOW = Window(days=frozenset({2}), start=time(12), end=time(13), tz="UTC")


def by_name(write: Write, text: str, name: str = "fleet.yaml") -> dict[str, Cluster]:
    """Write ``text`` as ``name``, load it; its clusters by name."""
    return {c.name: c for c in load(write(text, name)).clusters}


def only_cluster(write: Write, text: str, name: str = "fleet.yaml") -> Cluster:
    """Write ``text`` as ``name``, load it; its single cluster."""
    (cluster,) = load(write(text, name)).clusters
    return cluster


# -- window: what one resolves to ------------------------------------------------------


def test_a_window_resolves_to_days_times_and_zone(write: Write) -> None:
    """``{days: [sat, sun], start: "01:00", ...}`` -> days 5 and 6, 01:00 to 05:00, Paris."""
    cluster = only_cluster(write, HEAD + f"  window: {WEEKEND}\n" + ONE)
    assert cluster.window == WEEKEND_WINDOW


def test_no_window_anywhere_means_none(write: Write) -> None:
    """Without ``window:`` a cluster may be changed at any time (None)."""
    assert only_cluster(write, HEAD + ONE).window is None


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        pytest.param("[SAT, Sun]", {5, 6}, id="any-case"),
        pytest.param("[mon, tue, wed, thu, fri, sat, sun]", set(range(7)), id="every-day"),
        pytest.param("[sun, mon]", {6, 0}, id="any-order"),
    ],
)
def test_days_are_named_in_any_case_and_order(write: Write, days: str, expected: set[int]) -> None:
    """Day names are case-insensitive; the window keeps the set of day numbers."""
    window = f'{{days: {days}, start: "01:00", end: "02:00", tz: UTC}}'
    cluster = only_cluster(write, HEAD + f"  window: {window}\n" + ONE)
    assert cluster.window is not None
    assert cluster.window.days == frozenset(expected)


def test_an_end_before_the_start_is_an_overnight_window(write: Write) -> None:
    """22:00 to 02:00 is valid: the window closes the next morning."""
    cluster = only_cluster(write, HEAD + f"  window: {FRIDAY_NIGHT}\n" + ONE)
    assert cluster.window == FRIDAY_NIGHT_WINDOW


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        pytest.param('"00:00"', time(0), id="midnight"),
        pytest.param('"23:59"', time(23, 59), id="last-minute"),
        pytest.param('"7:05"', time(7, 5), id="one-digit-hour-quoted"),
        pytest.param("07:05", time(7, 5), id="zero-padded-unquoted"),
    ],
)
def test_start_times_that_are_accepted(write: Write, written: str, expected: time) -> None:
    """Quoted ``HH:MM`` (or ``H:MM``); an unquoted zero-padded time stays a string in YAML."""
    text = HEAD + f'  window: {{days: [mon], start: {written}, end: "12:00", tz: UTC}}\n' + ONE
    cluster = only_cluster(write, text)
    assert cluster.window is not None
    assert cluster.window.start == expected


@pytest.mark.parametrize(
    ("written", "suggested"),
    [
        pytest.param("10:30", '"10:30"', id="two-digit-hour"),
        pytest.param("1:00", '"01:00"', id="one-digit-hour"),
        pytest.param("23:59", '"23:59"', id="last-minute"),
    ],
)
def test_an_unquoted_time_that_yaml_reads_as_minutes_is_refused_with_the_fix(
    write: Write, written: str, suggested: str
) -> None:
    """YAML 1.1 reads 10:30 as 630: refused (not guessed back), naming the quoted time."""
    text = HEAD + f'  window: {{days: [mon], start: {written}, end: "00:30", tz: UTC}}\n' + ONE
    (problem,) = problems_of(write(text))
    assert problem.key_path == "defaults.window.start"
    assert problem.line == 6
    assert f"quote the time: start: {suggested}" in problem.message


def test_a_number_of_minutes_written_as_such_is_refused_too(write: Write) -> None:
    """``start: 630`` reads like 10:30 unquoted: both are refused the same way."""
    text = HEAD + '  window: {days: [mon], start: 630, end: "12:00", tz: UTC}\n' + ONE
    (problem,) = problems_of(write(text))
    assert 'quote the time: start: "10:30"' in problem.message


def test_toml_local_times_of_whole_minutes_are_taken_as_they_are(write: Write) -> None:
    """TOML's own time type is exact: ``start = 01:00:00`` is 01:00; seconds are refused."""
    text = """\
        version = 1
        [defaults]
        username = "admin"
        password = "env:ONTAP_PASSWORD"
        key_servers = ["kms1.example.com"]
        svms = "all"
        [defaults.window]
        days = ["sat", "sun"]
        start = 01:00:00
        end = "05:00"
        tz = "Europe/Paris"
        [[clusters]]
        name = "c1"
        address = "h1"
        """
    assert only_cluster(write, text, "fleet.toml").window == WEEKEND_WINDOW
    (problem,) = problems_of(write(text.replace("01:00:00", "01:00:30"), "fleet.toml"))
    assert (problem.key_path, problem.line) == ("defaults.window.start", 9)
    assert "expected whole minutes" in problem.message


def test_one_mistake_in_a_window_shared_by_many_clusters_is_reported_once(write: Write) -> None:
    """A bad group window is reported where it is written, not once per cluster."""
    text = HEAD + (
        "groups:\n"
        '  prod: {window: {days: [sat], start: "01:00", end: "02:00", tz: Nowhere/City}}\n'
        "clusters:\n"
        "  - {name: c1, address: h1, svms: all, groups: [prod]}\n"
        "  - {name: c2, address: h2, svms: all, groups: [prod]}\n"
    )
    (problem,) = problems_of(write(text))
    assert (problem.key_path, problem.line) == ("groups.prod.window.tz", 7)


# -- window: precedence ----------------------------------------------------------------

STACKED = HEAD + (
    f"  window: {WEEKEND}\n"
    "groups:\n"
    f"  prod: {{window: {FRIDAY_NIGHT}}}\n"
    f"  lab: {{window: {WEDNESDAY}}}\n"
    "  anytime: {window: null}\n"
    "  plain: {}\n"
    "clusters:\n"
    "  - {name: inherits-defaults, address: h1, svms: all, groups: [plain]}\n"
    "  - {name: inherits-group, address: h2, svms: all, groups: [prod]}\n"
    "  - {name: later-group-wins, address: h3, svms: all, groups: [prod, lab]}\n"
    "  - {name: later-group-wins-2, address: h4, svms: all, groups: [lab, prod]}\n"
    f"  - {{name: own-window, address: h5, svms: all, groups: [prod], window: {WEDNESDAY}}}\n"
    "  - {name: null-removes, address: h6, svms: all, groups: [prod], window: null}\n"
    "  - {name: group-null-removes, address: h7, svms: all, groups: [anytime]}\n"
    "  - {name: group-null-then-group, address: h8, svms: all, groups: [anytime, lab]}\n"
    f"  - {{name: own-over-null-group, address: h9, svms: all, groups: [anytime], "
    f"window: {FRIDAY_NIGHT}}}\n"
)


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        pytest.param("inherits-defaults", WEEKEND_WINDOW, id="defaults"),
        pytest.param("inherits-group", FRIDAY_NIGHT_WINDOW, id="group-over-defaults"),
        pytest.param("later-group-wins", WEDNESDAY_WINDOW, id="later-group-wins"),
        pytest.param("later-group-wins-2", FRIDAY_NIGHT_WINDOW, id="later-group-wins-reversed"),
        pytest.param("own-window", WEDNESDAY_WINDOW, id="cluster-over-groups"),
        pytest.param("null-removes", None, id="cluster-null-removes-inherited"),
        pytest.param("group-null-removes", None, id="group-null-removes-defaults"),
        pytest.param("group-null-then-group", WEDNESDAY_WINDOW, id="later-group-over-null"),
        pytest.param("own-over-null-group", FRIDAY_NIGHT_WINDOW, id="cluster-over-null-group"),
    ],
)
def test_windows_stack_cluster_over_groups_over_defaults(
    write: Write, cluster: str, expected: Window | None
) -> None:
    """The most specific ``window:`` wins whole; ``null`` means none, whatever is inherited."""
    assert by_name(write, STACKED)[cluster].window == expected


def test_a_window_is_replaced_whole_never_merged_key_by_key(write: Write) -> None:
    """A group writing only ``tz`` does not borrow days and times from defaults: an error."""
    text = HEAD + (
        f"  window: {WEEKEND}\n"
        "groups:\n"
        "  prod:\n"
        "    window: {tz: UTC}\n"
        "clusters: [{name: c1, address: h1, svms: all, groups: [prod]}]\n"
    )
    problems = problems_of(write(text))
    assert [(p.key_path, p.line) for p in problems] == [
        ("groups.prod.window.days", 9),
        ("groups.prod.window.start", 9),
        ("groups.prod.window.end", 9),
    ]
    assert all("is required" in p.message for p in problems)


def test_each_window_written_is_built_once_and_shared(write: Write) -> None:
    """Clusters inheriting a window, or writing the same one inline, share one object."""
    text = HEAD + (
        f"  window: {WEEKEND}\n"
        "clusters:\n"
        "  - {name: c1, address: h1, svms: all}\n"
        "  - {name: c2, address: h2, svms: all}\n"
        f"  - {{name: c3, address: h3, svms: all, window: {WEEKEND}}}\n"
        f"  - {{name: c4, address: h4, svms: all, window: {WEEKEND}}}\n"
    )
    windows = {id(c.window) for c in by_name(write, text).values()}
    assert len(windows) == 1


# -- wave: -----------------------------------------------------------------------------

WAVES = HEAD + (
    "groups:\n"
    "  canary: {wave: 1}\n"
    "  late: {wave: 3}\n"
    "  plain: {}\n"
    "clusters:\n"
    "  - {name: unpinned, address: h1, svms: all, groups: [plain]}\n"
    "  - {name: from-group, address: h2, svms: all, groups: [canary]}\n"
    "  - {name: later-group-wins, address: h3, svms: all, groups: [canary, late]}\n"
    "  - {name: own-wave, address: h4, svms: all, groups: [late], wave: 2}\n"
)


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        pytest.param("unpinned", None, id="none"),
        pytest.param("from-group", 1, id="group"),
        pytest.param("later-group-wins", 3, id="later-group-wins"),
        pytest.param("own-wave", 2, id="cluster-over-groups"),
    ],
)
def test_waves_are_pinned_by_the_cluster_or_its_groups(
    write: Write, cluster: str, expected: int | None
) -> None:
    """``wave:`` on the cluster wins over its groups (later over earlier); none: unpinned."""
    assert by_name(write, WAVES)[cluster].wave == expected


# -- rollout: --------------------------------------------------------------------------


def test_without_rollout_every_setting_is_unset(write: Write) -> None:
    """No ``rollout:``: each setting None, for the command line or its defaults to decide."""
    assert load(write(HEAD + ONE)).rollout == Rollout()


@pytest.mark.parametrize(
    "waves",
    [
        pytest.param("1,10%,100%", id="string"),
        pytest.param("'1, 10%, 100%'", id="string-with-spaces"),
        pytest.param("[1, 10%, 100%]", id="list"),
        pytest.param("['1', '10%', '100%']", id="list-of-strings"),
    ],
)
def test_rollout_settings_resolve(write: Write, waves: str) -> None:
    """Every key of ``rollout:``, waves as a string or a list alike; numbers as floats."""
    text = (
        HEAD
        + ONE
        + (
            "rollout:\n"
            f"  waves: {waves}\n"
            "  wave_order: random:42\n"
            "  max_fail_percent: 5\n"
            "  max_failures: 0\n"
            "  pause_between_waves: 90\n"
        )
    )
    assert load(write(text)).rollout == Rollout(
        waves=(WaveSize(1, percent=False), WaveSize(10, percent=True), WaveSize(100, percent=True)),
        wave_order="random:42",
        max_fail_percent=5.0,
        max_failures=0,
        pause_between_waves=90.0,
    )


@pytest.mark.parametrize("order", ["inventory", "name", "random:0"])
def test_every_wave_order_is_accepted(write: Write, order: str) -> None:
    """The three orders ``bulkkm.rollout`` knows."""
    text = HEAD + ONE + f"rollout: {{wave_order: '{order}'}}\n"
    assert load(write(text)).rollout.wave_order == order


def test_rollout_survives_filtering(write: Write) -> None:
    """``Inventory.filter`` keeps the rollout settings."""
    inventory = load(write(HEAD + ONE + "rollout: {max_failures: 2}\n"))
    assert inventory.filter(("nothing*",)).rollout == Rollout(max_failures=2)


# -- describe ----------------------------------------------------------------------------


def test_describe_shows_each_window_and_pin_and_the_rollout_once(write: Write) -> None:
    """The header line of a cluster names its window and wave; one line holds the rollout."""
    text = HEAD + (
        f"  window: {WEEKEND}\n"
        "clusters:\n"
        "  - {name: c1, address: h1, svms: all, wave: 1}\n"
        f"  - {{name: c2, address: h2, svms: all, window: {FRIDAY_NIGHT}}}\n"
        "  - {name: c3, address: h3, svms: all, window: null}\n"
        "rollout: {waves: '1,50%', wave_order: name, max_fail_percent: 12.5,"
        " max_failures: 3, pause_between_waves: 60}\n"
    )
    lines = describe(load(write(text)))
    assert lines[0] == (
        "c1 at h1:443 (concurrency 4, no rate limit, timeout 30s; "
        "window sat,sun 01:00-05:00 Europe/Paris; pinned to wave 1)"
    )
    assert lines[2] == (
        "c2 at h2:443 (concurrency 4, no rate limit, timeout 30s; "
        "window fri 22:00-02:00 America/New_York, overnight)"
    )
    assert lines[4] == "c3 at h3:443 (concurrency 4, no rate limit, timeout 30s)"
    rollout = [line for line in lines if line.startswith("rollout")]
    assert rollout == [
        "rollout (command-line options override): waves 1, 50%; order name; "
        "max failures 3; max fail 12.5%; pause 60s between waves"
    ]


def test_describe_has_no_rollout_line_when_none_is_set(write: Write) -> None:
    """Nothing about a rollout when the file has no ``rollout:`` settings."""
    lines = describe(load(write(HEAD + ONE + "rollout: {}\n")))
    assert not [line for line in lines if line.startswith("rollout")]
