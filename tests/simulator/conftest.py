"""Fixtures: fleets started on demand and closed after the test, and clients to them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bulkkm.simulator import FleetSpec, SimulatedFleet

from ._support import SPEC, Client, StartFleet


@pytest.fixture
async def start_fleet() -> AsyncIterator[StartFleet]:
    """Start fleets (``await start_fleet(spec)``); every one is closed after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(spec: FleetSpec = SPEC) -> SimulatedFleet:
            """Start one fleet."""
            return await stack.enter_async_context(SimulatedFleet(spec))

        yield start


@pytest.fixture
async def fleet(start_fleet: StartFleet) -> SimulatedFleet:
    """The small all-external fleet of ``SPEC``."""
    return await start_fleet()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session per test."""
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def client(fleet: SimulatedFleet, session: aiohttp.ClientSession) -> Client:
    """A client to ``sim-0000`` of ``fleet``."""
    return Client(session, fleet, "sim-0000")
