"""Fixtures of the chaos suite: a registry of the test's own that it can stop, freeze and empty, and the two parties
most tests route between."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from registry.connection import connect
from registry.keys import RegistryKeys
from registry.store import PartyStore
from tests.support.redis_server import RedisServer, redis_server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own (unix socket), stopped by its PID at the end."""
    with redis_server() as server:
        yield server


@pytest.fixture
async def own_store(own_redis: RedisServer, keys: RegistryKeys) -> AsyncIterator[PartyStore]:
    """The registry on ``own_redis``, through a client with the hub's own options (timeouts, retries)."""
    async with connect(own_redis.url) as client:
        yield PartyStore(client, keys)
