"""How a wave is cut into activities, and what a chunk's result packs (pure, no server)."""

from __future__ import annotations

import pytest

pytest.importorskip("temporalio", reason="the temporal extra is not installed")

from bulkkm.temporal._wire import CHUNK, ClusterJob, pack, pack_waves, unpack, unpack_waves
from bulkkm.temporal._workflow import _chunks


def jobs(count: int, regions: tuple[str, ...] = ("eu", "us")) -> list[ClusterJob]:
    """``count`` clusters spread over ``regions`` in turn."""
    return [ClusterJob(name=f"c{n:05}", region=regions[n % len(regions)]) for n in range(count)]


@pytest.mark.parametrize("count", [1, 7, 100, 10_000])
def test_every_cluster_is_in_one_chunk_of_one_region(count: int) -> None:
    """Each cluster once; a chunk is one region's, at most CHUNK clusters, in rollout order."""
    wave = jobs(count)
    chunks = _chunks(wave, CHUNK, 512)
    assert sorted(j.name for chunk in chunks for j in chunk) == [j.name for j in wave]
    for chunk in chunks:
        assert len({j.region for j in chunk}) == 1
        assert 1 <= len(chunk) <= CHUNK
    firsts = [chunk[0].name for chunk in chunks]
    assert firsts == sorted(firsts)


def test_ten_thousand_clusters_take_a_few_hundred_activities() -> None:
    """History grows per activity: 10,000 clusters fit Temporal's 51,200-event limit."""
    assert len(_chunks(jobs(10_000), CHUNK, 512)) <= 10_000 // CHUNK + 2


def test_a_small_wave_still_spreads_over_several_activities() -> None:
    """100 clusters of one region are not one activity: the worker runs chunks side by side."""
    assert len(_chunks(jobs(100, ("eu",)), CHUNK, 512)) >= 8


def test_packed_events_come_back_whole() -> None:
    """A chunk's events survive pack and unpack."""
    events = [{"type": "target", "cluster": f"c{n}", "outcome": "added"} for n in range(500)]
    text = pack(list(events))
    assert unpack(text) == events
    assert len(text) < len(str(events)) / 5


def test_the_waves_go_to_the_workflow_as_one_text_and_come_back_whole() -> None:
    """10,000 clusters in waves: packed as one text (no per-value conversion), read back."""
    waves = [
        [ClusterJob(name=j.name, region=j.region, wave=n) for j in jobs(count)]
        for n, count in enumerate((1, 999, 9_000), 1)
    ]
    assert unpack_waves(pack_waves(waves)) == waves
