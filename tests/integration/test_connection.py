"""registry/connection.py against a real Redis: a burst of commands waits for a bounded set of connections."""

from __future__ import annotations

import asyncio

import pytest

from registry.connection import MAX_CONNECTIONS, connect

pytestmark = pytest.mark.integration


async def test_a_burst_beyond_the_connection_bound_waits_instead_of_failing(redis_url: str) -> None:
    # 64 concurrent broadcast pushes each storing an object took more than redis-py's default pool of 100
    # connections and lost stores to "Too many connections"; now commands queue for one of MAX_CONNECTIONS.
    async with connect(redis_url) as client:
        burst = 5 * MAX_CONNECTIONS
        answers = await asyncio.gather(*(client.ping() for _ in range(burst)))
        assert answers == [True] * burst
        pool = client.connection_pool
        opened = len(pool._available_connections) + len(pool._in_use_connections)
        assert 0 < opened <= MAX_CONNECTIONS
