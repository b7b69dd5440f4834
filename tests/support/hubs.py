"""Helpers for tests that run hubs and fake parties."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from config.settings import Settings
from hub.app import HubApp, build_app
from registry.audit import Actor
from registry.keys import RegistryKeys
from registry.store import PartyStore
from routing.model import PartyRole
from tests.support.fake_party import FakeParty, wait_until
from tests.support.servers import bound_socket, serve

#: Who the test's registry changes are made by (audit events name an actor).
TEST_ACTOR = Actor.cli("test", "localhost")

#: What party URLs may reach in tests: the fake parties' loopback addresses (SSRF policy).
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")


def hub_settings(redis_url: str, keys: RegistryKeys, /, **overrides: Any) -> Settings:
    """A test hub's settings: short timers, its own key prefix, party URLs allowed on loopback only; any setting
    (``redis_url`` too) may be overridden."""
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


@asynccontextmanager
async def running_hub(redis_url: str, keys: RegistryKeys, /, **overrides: Any) -> AsyncIterator[RunningHub]:
    """An in-process hub on a loopback socket bound to port 0 (tests/conftest.py's ``hub_factory``, and fixtures
    wider than a test)."""
    sock = bound_socket()
    port = sock.getsockname()[1]
    settings = hub_settings(redis_url, keys, port=port, public_url=f"http://127.0.0.1:{port}", **overrides)
    metrics = CollectorRegistry()
    app = build_app(settings, metrics)
    async with serve(app, sock, ocpi_parser=True):
        yield RunningHub(app, settings, metrics)


@dataclass
class RunningHub:
    app: HubApp
    settings: Settings
    metrics: CollectorRegistry

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    @property
    def versions_url(self) -> str:
        return self.base_url + "/ocpi/versions"

    def url(self, path: str) -> str:
        return self.base_url + path

    def admin_url(self, path: str) -> str:
        """A URL on the hub's admin listener (/metrics, the operator's page)."""
        assert self.app.admin_port is not None, "the hub has not started"
        return f"http://127.0.0.1:{self.app.admin_port}{path}"

    def dialed(self) -> set[str]:
        """Every host the hub's outbound client has a pool for: a connection is only ever made through a pool,
        so a host missing here was never connected to (what an SSRF test asserts of a refused address)."""
        runtime = self.app.runtime
        assert runtime is not None
        return {host for host, _port, _tls in runtime.outbound.pools}

    async def synced(self, store: PartyStore) -> None:
        """Wait (bounded) until this hub's routing snapshot has every registry change made so far."""
        version = await store.version()
        runtime = self.app.runtime
        assert runtime is not None
        await wait_until(lambda: runtime.holder.table.version >= version, 2.0, "the hub's snapshot")


async def connect_party(store: PartyStore, hub: RunningHub, party: FakeParty) -> str:
    """Declare the party's platform (as `registry add` does) and let it register; returns the platform id."""
    record, token_a = await store.declare(
        [PartyRole.parse(f"{cc}:{pid}:{role}") for cc, pid, role in party.roles], party.name, actor=TEST_ACTOR
    )
    await hub.synced(store)
    reply = await party.register(hub.versions_url, token_a)
    assert reply.status_code == 200, reply.text
    assert reply.json()["status_code"] == 1000, reply.text
    return record.id


HubFactory = Callable[..., AbstractAsyncContextManager[RunningHub]]


@asynccontextmanager
async def parties(*specs: FakeParty) -> AsyncIterator[tuple[FakeParty, ...]]:
    """Run several fake parties at once."""
    async with AsyncExitStack() as stack:
        for spec in specs:
            await stack.enter_async_context(spec.running())
        yield specs


@asynccontextmanager
async def connected(store: PartyStore, hub: RunningHub, *specs: FakeParty) -> AsyncIterator[tuple[FakeParty, ...]]:
    """Run the parties, register each with ``hub`` (as ``connect_party``) and wait until the hub routes to them."""
    async with parties(*specs) as running:
        for party in running:
            await connect_party(store, hub, party)
        await hub.synced(store)
        yield running
