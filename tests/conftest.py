"""Shared fixtures: a private redis-server for the session, a key prefix per test, in-process hubs on loopback."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

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
    from config.settings import Settings

    def make(**overrides: Any) -> Settings:
        base = Settings(
            redis_url=redis_url,
            key_prefix=keys.prefix,
            forward_timeout=5.0,
            snapshot_poll_interval=0.1,
            lease_ttl=2.0,
            liveness_interval=300.0,
            drain_time=5.0,
            # Every fake party lives on loopback, which party URLs may not reach by default (SSRF policy).
            allow_party_networks=LOOPBACK_NETWORKS,
            admin_port=0,  # a free port per hub (RunningHub.admin_url)
        )
        return dataclasses.replace(base, **overrides)

    return make


@pytest.fixture
def hub_factory(test_settings: Callable[..., Settings]) -> HubFactory:
    from prometheus_client import CollectorRegistry

    from hub.app import build_app
    from tests.support.hubs import RunningHub
    from tests.support.servers import bound_socket, serve

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[RunningHub]:
        sock = bound_socket()
        port = sock.getsockname()[1]
        settings = test_settings(port=port, public_url=f"http://127.0.0.1:{port}", **overrides)
        metrics = CollectorRegistry()
        app = build_app(settings, metrics)
        async with serve(app, sock, ocpi_parser=True):
            yield RunningHub(app, settings, metrics)

    return start


@pytest.fixture
async def hub(hub_factory: HubFactory) -> AsyncIterator[RunningHub]:
    async with hub_factory() as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    import httpx

    async with httpx.AsyncClient(timeout=30) as c:
        yield c
