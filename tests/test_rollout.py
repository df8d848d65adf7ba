"""Waves and maintenance windows: pure logic, with the clock passed in."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bulkkm.rollout import Window, order_clusters, parse_waves, split_waves

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
WEEKEND_NIGHTS = Window(days=frozenset({5, 6}), start=time(1), end=time(5), tz="Europe/Paris")
OVERNIGHT = Window(days=frozenset(range(7)), start=time(22), end=time(2), tz="America/New_York")


def local(zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    """A wall-clock moment in ``zone``."""
    return datetime(year, month, day, hour, minute, tzinfo=zone)


@pytest.mark.parametrize(
    ("moment", "closes"),
    [
        (local(PARIS, 2026, 11, 28, 0, 59), None),  # Saturday, one minute early
        (local(PARIS, 2026, 11, 28, 1, 0), local(PARIS, 2026, 11, 28, 5, 0)),  # opens: inside
        (local(PARIS, 2026, 11, 28, 4, 59), local(PARIS, 2026, 11, 28, 5, 0)),
        (local(PARIS, 2026, 11, 28, 5, 0), None),  # closes: outside
        (local(PARIS, 2026, 11, 27, 2, 0), None),  # a Friday
        (local(PARIS, 2026, 11, 29, 3, 0), local(PARIS, 2026, 11, 29, 5, 0)),  # Sunday
    ],
)
def test_window_edges(moment: datetime, closes: datetime | None) -> None:
    """The start is inside the window, the end is not; only the listed days."""
    assert WEEKEND_NIGHTS.closes_at(moment) == closes


def test_overnight_window_spans_midnight() -> None:
    """22:00-02:00 covers late evening and the small hours of the next day."""
    assert OVERNIGHT.closes_at(local(NEW_YORK, 2026, 11, 27, 23, 0)) == local(
        NEW_YORK, 2026, 11, 28, 2, 0
    )
    assert OVERNIGHT.closes_at(local(NEW_YORK, 2026, 11, 28, 1, 30)) == local(
        NEW_YORK, 2026, 11, 28, 2, 0
    )
    assert OVERNIGHT.closes_at(local(NEW_YORK, 2026, 11, 28, 2, 0)) is None
    assert OVERNIGHT.closes_at(local(NEW_YORK, 2026, 11, 28, 21, 59)) is None


def test_overnight_window_opening_on_a_listed_day_only() -> None:
    """A Friday-only 22:00-02:00 window is open early Saturday, not early Friday."""
    friday = Window(days=frozenset({4}), start=time(22), end=time(2), tz="UTC")
    assert friday.closes_at(datetime(2026, 11, 28, 1, tzinfo=UTC)) is not None
    assert friday.closes_at(datetime(2026, 11, 27, 1, tzinfo=UTC)) is None


def test_paris_spring_forward_window_is_an_hour_shorter() -> None:
    """On 29 March 2026 Paris skips 02:00-03:00: 01:00-05:00 lasts three real hours."""
    opens = local(PARIS, 2026, 3, 29, 1, 0)
    closes = WEEKEND_NIGHTS.closes_at(opens)
    assert closes is not None
    assert closes - opens == timedelta(hours=3)


def test_paris_fall_back_window_is_an_hour_longer() -> None:
    """On 25 October 2026 Paris repeats 02:00-03:00: 01:00-05:00 lasts five real hours."""
    opens = local(PARIS, 2026, 10, 25, 1, 0)
    closes = WEEKEND_NIGHTS.closes_at(opens)
    assert closes is not None
    assert closes.astimezone(UTC) - opens.astimezone(UTC) == timedelta(hours=5)


def test_window_starting_in_a_skipped_hour_opens_after_the_jump() -> None:
    """New York skips 02:00-03:00 on 8 March 2026: a 02:30 start opens at 03:30 EDT."""
    window = Window(days=frozenset({6}), start=time(2, 30), end=time(4), tz="America/New_York")
    assert window.closes_at(local(NEW_YORK, 2026, 3, 8, 3, 15)) is None
    assert window.closes_at(local(NEW_YORK, 2026, 3, 8, 3, 45)) is not None
    assert window.next_opening(local(NEW_YORK, 2026, 3, 7, 12, 0)) == local(
        NEW_YORK, 2026, 3, 8, 3, 30
    )


def test_next_opening_is_now_inside_and_the_next_slot_outside() -> None:
    """Inside a window the next opening is now; on a Friday it is Saturday 01:00."""
    inside = local(PARIS, 2026, 11, 28, 2, 0)
    assert WEEKEND_NIGHTS.next_opening(inside) == inside
    assert WEEKEND_NIGHTS.next_opening(local(PARIS, 2026, 11, 27, 12, 0)) == local(
        PARIS, 2026, 11, 28, 1, 0
    )
    assert str(WEEKEND_NIGHTS) == "sat,sun 01:00-05:00 Europe/Paris"


@pytest.mark.parametrize(
    ("spec", "fleet", "sizes"),
    [
        ("1,10%,100%", 50, [1, 4, 45]),
        ("1,5", 12, [1, 4, 4, 3]),
        ("100%", 7, [7]),
        ("2,50%", 3, [2, 1]),
        ([1, "10%", "100%"], 50, [1, 4, 45]),
    ],
)
def test_waves_are_cumulative(spec: str | list[object], fleet: int, sizes: list[int]) -> None:
    """1,10%,100% over 50 clusters: 1, then 5 in all, then 50; the last step repeats."""
    waves = split_waves([f"c{i}" for i in range(fleet)], parse_waves(spec), lambda c: None)
    assert [len(w) for w in waves] == sizes
    assert [c for w in waves for c in w] == [f"c{i}" for i in range(fleet)]


def test_pinned_canary_goes_first_and_counts_toward_the_wave() -> None:
    """A cluster pinned to wave 1 is the whole of a one-cluster first wave."""
    names = [f"c{i}" for i in range(10)]
    waves = split_waves(names, parse_waves("1,50%,100%"), lambda c: 1 if c == "c9" else None)
    assert waves[0] == ("c9",)
    assert waves[1] == ("c0", "c1", "c2", "c3")
    assert sum(len(w) for w in waves) == 10


@pytest.mark.parametrize("spec", ["0", "1,x", "101%", "-1", "", "0%"])
def test_bad_wave_sizes_are_refused(spec: str) -> None:
    """Counts are whole numbers from 1, percentages above 0 up to 100."""
    with pytest.raises(ValueError, match="wave size"):
        parse_waves(spec)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("10%,5%", "does not reach past 10%"),
        ("5,5", "does not reach past 5"),
        ("1,150%", "at most 100%"),
        ("100%,5", "follows 100%"),
        ("1,nan%", "not a percentage"),
    ],
)
def test_wave_sizes_must_grow(spec: str, says: str) -> None:
    """Cumulative sizes: each reaches past the last of its kind; nothing after 100%."""
    with pytest.raises(ValueError, match=says):
        parse_waves(spec)


def test_wave_orders_are_stable() -> None:
    """name sorts; random:SEED shuffles the same way every time; anything else is refused."""
    names = ["b", "c", "a"]
    assert order_clusters(names, "name", str) == ["a", "b", "c"]
    assert order_clusters(names, "random:7", str) == order_clusters(names, "random:7", str)
    assert order_clusters(names, "inventory", str) == names
    with pytest.raises(ValueError):
        order_clusters(names, "random:x", str)
