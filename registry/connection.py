"""Opening the registry's Redis: a configured URL, or the embedded default.

Owns: the one place a ``redis.asyncio`` client is created from settings, and the URL forms it accepts:
``redis://``, ``rediss://`` and ``unix://`` (standalone), and ``redis+sentinel://[:password@]host:port[,host:port…]
/service_name[/db]`` (Sentinel: the client follows the current master). Must not: hold registry logic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel

from registry.embedded import EmbeddedRedis

SENTINEL_SCHEME: Final = "redis+sentinel://"
_CLIENT_OPTIONS: Final[dict[str, Any]] = {
    "socket_connect_timeout": 5,
    "socket_timeout": 10,
    "health_check_interval": 30,
}


def sentinel_client(url: str) -> tuple[Redis, Sentinel]:
    """A client of the master a set of Sentinels names, and the Sentinel (its clients close with it)."""
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("redis+sentinel:// URLs name the service: redis+sentinel://host:port/service_name[/db]")
    service, db = path[0], int(path[1]) if len(path) > 1 else 0
    hosts = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = item.rpartition(":")
        hosts.append((host or item, int(port) if host else 26379))
    password = unquote(parts.password) if parts.password else None
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves Sentinel.__init__ unannotated
        hosts, sentinel_kwargs={"password": password} if password else None, **_CLIENT_OPTIONS
    )
    client: Redis = sentinel.master_for(service, db=db, password=password)
    return client, sentinel


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[Redis]:
    """A client for ``url`` (any accepted form), closed with everything it opened when the block ends."""
    sentinel = None
    if url.startswith(SENTINEL_SCHEME):
        client, sentinel = sentinel_client(url)
    else:
        client = Redis.from_url(url, **_CLIENT_OPTIONS)
    try:
        yield client
    finally:
        await client.aclose()
        if sentinel is not None:
            for watcher in sentinel.sentinels:
                await watcher.aclose()


@asynccontextmanager
async def open_redis(redis_url: str, data_dir: str) -> AsyncIterator[Redis]:
    """A connected client; with no URL, on the embedded server under ``data_dir`` (stopped when last out)."""
    embedded = None if redis_url else EmbeddedRedis(data_dir)
    try:
        async with connect(redis_url or (embedded.url if embedded else "")) as client:
            yield client
    finally:
        if embedded is not None:
            embedded.close()
