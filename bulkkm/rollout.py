"""Rolling out safely: waves of clusters and maintenance windows. Pure: the clock is passed in.

Waves are cumulative, as in Ansible's ``serial``: ``1,10%,100%`` over 50 clusters makes
waves of 1, then 5 (up to 10% of the fleet), then 50 clusters in all. A cluster pinned with
``wave: N`` goes in wave N whatever the sizes say.

A window is a weekly slot in a time zone: ``{days: [sat, sun], start: "01:00", end:
"05:00", tz: "Europe/Paris"}``. A window whose end is not after its start runs overnight,
into the next day; ``days`` names the day it opens.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Final, TypeVar
from zoneinfo import ZoneInfo

__all__ = [
    "DAYS",
    "WaveSize",
    "Window",
    "check_order",
    "order_clusters",
    "parse_waves",
    "split_waves",
]

DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class WaveSize:
    """How far one wave reaches: a count of clusters, or a percentage of the fleet."""

    value: float
    percent: bool

    def reach(self, fleet: int) -> int:
        """How many clusters, counted from the first, this wave and the ones before it cover."""
        if not self.percent:
            return min(int(self.value), fleet)
        return min(max(math.ceil(fleet * self.value / 100), 1), fleet)

    def __str__(self) -> str:
        """``10%`` or ``5``."""
        return f"{self.value:g}%" if self.percent else f"{int(self.value)}"


def parse_waves(spec: str | Sequence[object]) -> tuple[WaveSize, ...]:
    """``"1,10%,100%"`` (or a list of the same) -> wave sizes; ValueError when malformed.

    Sizes are cumulative, so each must reach further than the one before it of the same
    kind (``10%,5%`` is refused), and nothing may follow ``100%``.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    if not items:
        raise ValueError("no waves given")
    sizes: list[WaveSize] = []
    for item in items:
        size = _wave_size(item)
        if sizes and sizes[-1].percent and sizes[-1].value >= 100:
            raise ValueError(f"wave size {size} follows 100%, which is the whole fleet already")
        before = [s for s in sizes if s.percent == size.percent]
        if before and size.value <= before[-1].value:
            raise ValueError(
                f"wave size {size} does not reach past {before[-1]}: "
                "sizes are cumulative (1,10%,100% means 1, then 10% in all, then all)"
            )
        sizes.append(size)
    return tuple(sizes)


def _wave_size(item: object) -> WaveSize:
    """One wave size: a count from 1, or a percentage above 0 up to 100."""
    text = str(item).strip()
    if text.endswith("%"):
        try:
            value = float(text[:-1])
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"wave size {text!r} is not a percentage (10%)")
        if not 0 < value <= 100:
            raise ValueError(f"wave size {text!r} must be above 0% and at most 100%")
        return WaveSize(value, percent=True)
    if isinstance(item, bool) or not text.isdigit() or int(text) < 1:
        raise ValueError(
            f"wave size {text!r} is neither a count of clusters (1, 5) nor a percentage (10%)"
        )
    return WaveSize(int(text), percent=False)


def order_clusters(clusters: Sequence[T], order: str, name: Callable[[T], str]) -> list[T]:
    """Clusters in rollout order: ``inventory``, ``name`` or ``random:SEED`` (stable per seed)."""
    ordered = list(clusters)
    if order == "inventory":
        return ordered
    if order == "name":
        return sorted(ordered, key=name)
    if order.startswith("random:") and order[7:].isdigit():
        random.Random(int(order[7:])).shuffle(ordered)
        return ordered
    raise ValueError(f"wave order {order!r} is not inventory, name or random:SEED")


def check_order(order: str) -> str:
    """``order`` if it is a wave order; ValueError otherwise."""
    order_clusters((), order, str)
    return order


def split_waves(
    clusters: Sequence[T], sizes: Sequence[WaveSize], pinned: Callable[[T], int | None]
) -> tuple[tuple[T, ...], ...]:
    """Ordered clusters cut into waves; a cluster pinned to wave N goes in wave N.

    Sizes are cumulative. When the last size leaves clusters over, further waves of the
    last wave's size follow until every cluster has one.
    """
    waves: list[list[T]] = [[] for _ in sizes]
    free: list[T] = []
    for cluster in clusters:
        pin = pinned(cluster)
        if pin is None:
            free.append(cluster)
            continue
        while len(waves) < pin:
            waves.append([])
        waves[pin - 1].append(cluster)
    reach = [size.reach(len(clusters)) for size in sizes]
    covered = 0
    for number, wave in enumerate(waves):
        covered += len(wave)
        target = reach[number] if number < len(reach) else covered
        take = max(min(target - covered, len(free)), 0)
        wave.extend(free[:take])
        del free[:take]
        covered += take
    step = max(reach[-1] - (reach[-2] if len(reach) > 1 else 0), 1)
    rest = free
    waves += [rest[i : i + step] for i in range(0, len(rest), step)]
    return tuple(tuple(wave) for wave in waves if wave)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """A weekly maintenance window in a time zone."""

    days: frozenset[int]
    """Days the window opens, 0 = Monday … 6 = Sunday."""
    start: time
    end: time
    """Not after ``start``: the window runs overnight and closes the next day."""
    tz: str
    """An IANA time zone (``Europe/Paris``)."""

    def closes_at(self, now: datetime) -> datetime | None:
        """When the occurrence of the window that ``now`` is in closes; None when outside."""
        for opens, closes in self._occurrences(now, range(-1, 1)):
            if opens <= now < closes:
                return closes
        return None

    def next_opening(self, now: datetime) -> datetime:
        """``now`` when inside the window, else when it next opens."""
        if self.closes_at(now) is not None:
            return now
        return min(opens for opens, _ in self._occurrences(now, range(8)) if opens > now)

    def _occurrences(self, now: datetime, offsets: range) -> list[tuple[datetime, datetime]]:
        """(opens, closes) in UTC of the occurrences opening ``offsets`` days from today."""
        zone = ZoneInfo(self.tz)
        today = now.astimezone(zone).date()
        overnight = self.end <= self.start
        out: list[tuple[datetime, datetime]] = []
        for offset in offsets:
            day = today + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            # Wall-clock times made absolute: a time skipped by a DST change counts as the
            # same wall time after the change (fold=0), an ambiguous one as the first.
            opens = datetime.combine(day, self.start, tzinfo=zone).astimezone(UTC)
            last = day + timedelta(days=1) if overnight else day
            closes = datetime.combine(last, self.end, tzinfo=zone).astimezone(UTC)
            out.append((opens, closes))
        return out

    def __str__(self) -> str:
        """``sat,sun 01:00-05:00 Europe/Paris``."""
        days = ",".join(DAYS[d] for d in sorted(self.days))
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M} {self.tz}"
