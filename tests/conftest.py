"""Shared fixtures: a private redis-server for the session, a key prefix per test, in-process hubs on loopback."""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from registry.keys import RegistryKeys

if TYPE_CHECKING:
    # Imported where used: `pytest tests/unit/routing` (the inner loop) then starts without the hub, Redis and
    # HTTP client stacks.
    import httpx
    from redis.asyncio import Redis

    from config.settings import Settings
    from registry.store import PartyStore
    from tests.support.hubs import HubFactory, RunningHub

#: What tests allow party URLs to reach: the fake parties' loopback addresses.
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The session's Redis: OCPI_HUB_TEST_REDIS_URL, else a private redis-server. On TCP, not a unix socket:
    store and object tests cut connections through a TCP proxy in front of it (a lost port race is retried)."""
    from tests.support.redis_server import running_redis

    url = os.environ.get("OCPI_HUB_TEST_REDIS_URL")
    if url:
        yield url
        return
    with running_redis() as started:
        yield started


@pytest.fixture
def keys() -> RegistryKeys:
    return RegistryKeys(prefix=f"test:{uuid.uuid4().hex}:")


@pytest.fixture
async def redis(redis_url: str, keys: RegistryKeys) -> AsyncIterator[Redis]:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    yield client
    # Delete only this test's keys (its own hash tag), nothing else on the server.
    async for key in client.scan_iter(match="{" + keys.prefix.rstrip(":") + "}:*"):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
async def store(redis: Redis, keys: RegistryKeys) -> PartyStore:
    from registry.store import PartyStore

    return PartyStore(redis, keys)


@pytest.fixture
def test_settings(redis_url: str, keys: RegistryKeys) -> Callable[..., Settings]:
    from tests.support.hubs import hub_settings

    return functools.partial(hub_settings, redis_url, keys)


@pytest.fixture
def hub_factory(redis_url: str, keys: RegistryKeys) -> HubFactory:
    from tests.support.hubs import running_hub

    return functools.partial(running_hub, redis_url, keys)


@pytest.fixture
async def hub(hub_factory: HubFactory) -> AsyncIterator[RunningHub]:
    async with hub_factory() as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    import httpx

    async with httpx.AsyncClient(timeout=30) as c:
        yield c
