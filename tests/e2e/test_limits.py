"""The operator's hands on routing (issues: real third-party parties, hostile traffic): an endpoint override used
by the hub and kept across the party's credentials PUT, and a per-platform rate limit answered 429 + Retry-After
with an OCPI envelope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from registry.codec import EndpointRecord, RateLimit
from registry.store import PartyStore
from routing.model import PartyKey
from tests.support.fake_party import FakeParty
from tests.support.hubs import TEST_ACTOR, RunningHub, connected

pytestmark = pytest.mark.e2e

CPO = ("NL", "CPO")


@dataclass
class World:
    hub: RunningHub
    store: PartyStore
    cpo: FakeParty
    emsp: FakeParty
    client: httpx.AsyncClient


@pytest.fixture
async def world(hub: RunningHub, store: PartyStore, client: httpx.AsyncClient) -> AsyncIterator[World]:
    # The CPO publishes no commands endpoint, as extrawest-ocpi's CPO does.
    publish = {(m, r) for m in ("locations", "tariffs", "sessions", "cdrs") for r in ("SENDER", "RECEIVER")}
    cpo = FakeParty([("NL", "CPO", "CPO")], name="cpo", publish=publish)
    emsp = FakeParty([("BE", "EMP", "EMSP")], name="emsp")
    async with connected(store, hub, cpo, emsp):
        yield World(hub, store, cpo, emsp, client)


async def test_an_endpoint_override_is_used_and_survives_a_credentials_put(world: World) -> None:
    w = world
    command = b'{"location_id":"L1","response_url":"' + w.emsp.base_url.encode() + b'/r"}'
    path = "/ocpi/2.2.1/receiver/commands/START_SESSION"
    missing = await w.client.post(w.hub.url(path), headers=w.emsp.headers_to(CPO), content=command)
    assert missing.json()["status_code"] == 4003  # the party never published it

    record = await w.store.find(PartyKey(*CPO))
    url = w.cpo.base_url + "/ocpi/2.2.1/commands/receiver"  # where the CPO really serves commands
    override = EndpointRecord("commands", "RECEIVER", url)
    await w.store.set_endpoint_override(record.id, override, actor=TEST_ACTOR)
    await w.hub.synced(w.store)
    routed = await w.client.post(w.hub.url(path), headers=w.emsp.headers_to(CPO), content=command)
    assert routed.json()["status_code"] == 1000
    assert w.cpo.received[-1].path == "/ocpi/2.2.1/commands/receiver/START_SESSION"

    # The party updates its credentials (its endpoints are read again): the operator's override stays.
    reply = await w.cpo.register(w.hub.versions_url, w.cpo.hub_token, method="PUT")
    assert reply.json()["status_code"] == 1000, reply.text
    await w.hub.synced(w.store)
    again = await w.client.post(w.hub.url(path), headers=w.emsp.headers_to(CPO), content=command)
    assert again.json()["status_code"] == 1000
    assert (await w.store.find(PartyKey(*CPO))).endpoint_overrides == (override,)


async def test_a_rate_limited_platform_gets_429_with_retry_after(world: World) -> None:
    w = world
    record = await w.store.find(PartyKey("BE", "EMP"))
    await w.store.set_rate_limit(record.id, RateLimit(rps=1, burst=3), actor=TEST_ACTOR)
    await w.hub.synced(w.store)
    replies = [
        await w.client.get(w.hub.url("/ocpi/2.2.1/sender/locations"), headers=w.emsp.headers_to(CPO)) for _ in range(5)
    ]
    assert [r.status_code for r in replies[:3]] == [200, 200, 200]
    limited = replies[3]
    assert limited.status_code == 429
    assert limited.json()["status_code"] == 2000
    assert int(limited.headers["retry-after"]) >= 1
    assert len(w.cpo.received) == 3  # nothing past the limit was forwarded
    # Other platforms are not limited by it.
    cpo_headers = w.cpo.headers_to(("BE", "EMP"))
    assert (await w.client.get(w.hub.url("/ocpi/2.2.1/sender/tokens"), headers=cpo_headers)).status_code == 200
    # Lifted: at once.
    await w.store.set_rate_limit(record.id, None, actor=TEST_ACTOR)
    await w.hub.synced(w.store)
    lifted = await w.client.get(w.hub.url("/ocpi/2.2.1/sender/locations"), headers=w.emsp.headers_to(CPO))
    assert lifted.status_code == 200
