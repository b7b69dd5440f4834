"""Opening the registry's Redis: a configured URL, or the embedded default.

Owns: the one place a ``redis.asyncio`` client is created from settings, and the URL forms it accepts:
``redis://``, ``rediss://`` and ``unix://`` (standalone), and ``redis+sentinel://[:password@]host:port[,host:port…]
/service_name[/db]`` (Sentinel: the client follows the current master); and the retry policy of every command:
connection errors (refused, reset, timed out, and LOADING while a restarted Redis reads its data) are retried 5
times within 1.5 s, so a registry blip or restart delays a control-plane call instead of failing it. Nothing else
is retried: a WatchError is the transaction's to handle (registry/store.py), and a script or command error would
only fail again. Connections per client are bounded and a command waits for a free one (a burst of broadcast
pushes, each storing its object, must queue for Redis rather than fail with redis-py's "Too many connections").
Must not: hold registry logic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.connection import BlockingConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from registry.embedded import CLIENT_NAME, EmbeddedRedis

SENTINEL_SCHEME: Final = "redis+sentinel://"
#: Retries after a first failed try, and the backoff between them: 0.1, 0.2, 0.4, 0.8 s (1.5 s in all).
RETRIES: Final = 4
RETRY_BACKOFF: Final = ExponentialBackoff(cap=0.8, base=0.05)
#: BusyLoadingError is a ConnectionError in redis-py; it is named so that this stays true if that ever changes.
RETRIED_ERRORS: Final = (ConnectionError, TimeoutError, BusyLoadingError)
#: Connections one client (one hub process, one CLI command) opens at most, and how long a command waits for one
#: before failing like an unreachable registry.
MAX_CONNECTIONS: Final = 64
CONNECTION_WAIT: Final = 10.0


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's master-following pool with the blocking pool's bound and wait (redis-py has only the
    non-blocking one for Sentinel; neither overrides what the other defines)."""


class RegistryUrlError(ValueError):
    """A registry URL this module cannot use (the message is one line, naming ``redis_url``)."""


def retry_policy() -> Retry:
    """The retry policy of every registry client (each connection gets its own copy)."""
    return Retry(RETRY_BACKOFF, RETRIES, supported_errors=RETRIED_ERRORS)


_CLIENT_OPTIONS: Final[dict[str, Any]] = {
    "socket_connect_timeout": 5,
    "socket_timeout": 10,
    "health_check_interval": 30,
    "retry": retry_policy(),
    # Names this process's connections in CLIENT LIST (registry/embedded.py tells them from other processes').
    "client_name": CLIENT_NAME,
}


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """What a ``redis+sentinel://`` URL names."""

    hosts: tuple[tuple[str, int], ...]
    service: str
    db: int
    password: str | None


def parse_sentinel_url(url: str) -> SentinelUrl:
    """``redis+sentinel://[:password@]host:port[,host:port…]/service_name[/db]``; ValueError says what is wrong."""
    parts = urlsplit(url)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("redis+sentinel:// URLs name the service: redis+sentinel://host:port/service_name[/db]")
    try:
        db = int(path[1]) if len(path) > 1 else 0
    except ValueError:
        raise ValueError(f"redis+sentinel:// database must be a number, got {path[1]!r}") from None
    hosts = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = item.rpartition(":")
        if not (host or item):
            raise ValueError("redis+sentinel:// URLs name at least one sentinel host:port")
        try:
            hosts.append((host or item, int(port) if host else 26379))
        except ValueError:
            raise ValueError(f"redis+sentinel:// port must be a number, got {port!r}") from None
    password = unquote(parts.password) if parts.password else None
    return SentinelUrl(tuple(hosts), path[0], db, password)


def check_url(url: str) -> None:
    """Refuse, without connecting, a registry URL that ``connect`` could not use (RegistryUrlError, one line)."""
    try:
        if url.startswith(SENTINEL_SCHEME):
            parse_sentinel_url(url)
        else:
            parse_url(url)
    except ValueError as exc:
        raise RegistryUrlError(f"redis_url: {exc}") from None


def sentinel_client(url: str) -> tuple[Redis, Sentinel]:
    """A client of the master a set of Sentinels names, and the Sentinel (its clients close with it)."""
    parsed = parse_sentinel_url(url)
    password = parsed.password
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py leaves Sentinel.__init__ unannotated
        list(parsed.hosts), sentinel_kwargs={"password": password} if password else None, **_CLIENT_OPTIONS
    )
    client: Redis = sentinel.master_for(
        parsed.service,
        db=parsed.db,
        password=password,
        connection_pool_class=BlockingSentinelConnectionPool,
        max_connections=MAX_CONNECTIONS,
        timeout=CONNECTION_WAIT,
    )
    return client, sentinel


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[Redis]:
    """A client for ``url`` (any accepted form), closed with everything it opened when the block ends."""
    sentinel = None
    check_url(url)
    if url.startswith(SENTINEL_SCHEME):
        client, sentinel = sentinel_client(url)
    else:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=CONNECTION_WAIT, **_CLIENT_OPTIONS
        )
        client = Redis.from_pool(pool)  # the client owns the pool: closed with it
    try:
        yield client
    finally:
        await client.aclose()
        if sentinel is not None:
            for watcher in sentinel.sentinels:
                await watcher.aclose()


@asynccontextmanager
async def open_redis(redis_url: str, data_dir: str) -> AsyncIterator[Redis]:
    """A connected client; with no URL, on the embedded server under ``data_dir`` (stopped when last out).

    Raises RegistryUrlError for an unusable URL and EmbeddedRedisError for an unusable data directory, before
    anything is started.
    """
    if redis_url:
        check_url(redis_url)
    embedded = None if redis_url else EmbeddedRedis(data_dir)
    try:
        async with connect(redis_url or (embedded.url if embedded else "")) as client:
            yield client
    finally:
        if embedded is not None:
            embedded.close()
