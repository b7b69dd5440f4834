"""Opening the registry's Redis: a configured URL, or the embedded default.

Owns: the one place a ``redis.asyncio`` client is created from settings. Must not: hold registry logic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from registry.embedded import EmbeddedRedis


@asynccontextmanager
async def open_redis(redis_url: str, data_dir: str) -> AsyncIterator[Redis]:
    """A connected client; with no URL, on the embedded server under ``data_dir`` (stopped when last out)."""
    embedded = None if redis_url else EmbeddedRedis(data_dir)
    url = redis_url or (embedded.url if embedded else "")
    client = Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=30)
    try:
        yield client
    finally:
        await client.aclose()
        if embedded is not None:
            embedded.close()
