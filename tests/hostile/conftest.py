"""Fixtures for hostile-server tests: a CA, a hostile ONTAP, a second host to redirect to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.hostile._server import HostileServer, Pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA the client trusts (one for the session: making CAs is the slow part)."""
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session per test, as a run has."""
    async with aiohttp.ClientSession(trust_env=False) as s:
        yield s


@pytest.fixture
async def server(pki: Pki) -> AsyncIterator[HostileServer]:
    """A hostile ONTAP with a valid certificate, on 127.0.0.1."""
    async with HostileServer(pki.context()) as s:
        yield s


@pytest.fixture
async def elsewhere(pki: Pki) -> AsyncIterator[HostileServer]:
    """Another host (127.0.0.2) a hostile answer may point at: it must never be asked."""
    async with HostileServer(pki.context(), host="127.0.0.2") as s:
        yield s
