"""Party URLs go only where they may (issue: hold under hostile traffic, SSRF): the versions URL and every endpoint
a party gives are checked when it registers — http(s), a valid host and port, public addresses only unless the
operator allows a network — and refused with a 2001 that says what to fix but not what is listening where.

The private-range and loopback addresses below are refused before any connection is attempted: each test asserts
that the fake party was never called and that the hub's outbound client never had a pool for the refused host
(``RunningHub.dialed``: every connection goes through one).
"""

from __future__ import annotations

import httpx
import orjson
import pytest

from registry.store import PartyStore
from routing.model import PartyKey, PartyRole
from tests.support.fake_party import FakeParty, token_header
from tests.support.hubs import TEST_ACTOR, HubFactory
from tests.support.processes import hub_env, run_ocpi_hub

pytestmark = pytest.mark.integration

NOT_PUBLIC = "the host must resolve to a public internet address"


async def declare(store: PartyStore, party: FakeParty) -> str:
    roles = [PartyRole.parse(f"{cc}:{pid}:{role}") for cc, pid, role in party.roles]
    _, token_a = await store.declare(roles, party.name, actor=TEST_ACTOR)
    return token_a


async def redeclare(store: PartyStore, party: FakeParty) -> str:
    """The party's platform removed and declared again: a new token A."""
    record = await store.find(PartyKey(*party.party()))
    await store.remove(record.id, actor=TEST_ACTOR)
    return await declare(store, party)


async def post_credentials(hub_url: str, token_a: str, credentials: dict[str, object]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=20) as client:
        return await client.post(
            hub_url + "/ocpi/2.2.1/credentials",
            headers={"Authorization": token_header(token_a)},
            content=orjson.dumps(credentials),
        )


async def test_loopback_party_is_refused_without_an_allowed_network(hub_factory: HubFactory, store: PartyStore) -> None:
    async with hub_factory(allow_party_networks=()) as hub, FakeParty([("NL", "CPO", "CPO")]).running() as party:
        await hub.synced(store)
        token_a = await declare(store, party)
        await hub.synced(store)
        reply = await post_credentials(hub.base_url, token_a, party.my_credentials())
        assert reply.status_code == 400
        assert reply.json()["status_code"] == 2001
        assert reply.json()["status_message"] == f"url (versions): {NOT_PUBLIC}"
        assert party.versions_auth == []  # never called
        # Unresolvable, loopback by name, metadata address, decimal spelling: one answer for all of them. (A fresh
        # token A every few tries: a token gets 5 failed registrations per 10 minutes.)
        token_a = await redeclare(store, party)
        await hub.synced(store)
        for url in (
            "http://localhost:9/ocpi/versions",
            "http://does-not-exist.invalid/ocpi/versions",
            "http://169.254.169.254/latest/meta-data",
            "http://2130706433/ocpi/versions",
            "http://[::1]:8080/ocpi/versions",
        ):
            reply = await post_credentials(hub.base_url, token_a, party.my_credentials() | {"url": url})
            assert reply.json()["status_message"] == f"url (versions): {NOT_PUBLIC}", url
        assert hub.dialed().isdisjoint({"localhost", "does-not-exist.invalid", "169.254.169.254", "2130706433", "::1"})
        token_a = await redeclare(store, party)
        await hub.synced(store)
        for url, message in (
            ("http://host:70000/ocpi/versions", "port"),
            ("http://user:pw@host/ocpi/versions", "user names or passwords"),
            ("gopher://host/ocpi/versions", "http"),
        ):
            reply = await post_credentials(hub.base_url, token_a, party.my_credentials() | {"url": url})
            assert reply.json()["status_code"] == 2001
            assert message in reply.json()["status_message"], url
        # Nothing was stored: the token A still works once the operator allows the network.
        record = await store.find(PartyKey("NL", "CPO"))
        assert not record.registered


async def test_a_published_endpoint_on_a_private_address_is_refused(hub_factory: HubFactory, store: PartyStore) -> None:
    party = FakeParty([("NL", "CPO", "CPO")])
    async with hub_factory() as hub, party.running():
        original = party.endpoints

        def endpoints() -> list[dict[str, str]]:
            out = original()
            out.append({"identifier": "tariffs", "role": "SENDER", "url": "http://10.1.2.3/ocpi/tariffs"})
            return out

        party.endpoints = endpoints  # type: ignore[method-assign]  # this party publishes one bad endpoint
        await hub.synced(store)
        token_a = await declare(store, party)
        await hub.synced(store)
        reply = await party.register(hub.versions_url, token_a)
        assert reply.json()["status_code"] == 2001
        assert reply.json()["status_message"] == f"endpoint tariffs SENDER: {NOT_PUBLIC}"
        assert not (await store.find(PartyKey("NL", "CPO"))).registered
        assert "10.1.2.3" not in hub.dialed()
        # Fixed by the party, the same token A registers.
        party.endpoints = original  # type: ignore[method-assign]
        reply = await party.register(hub.versions_url, token_a)
        assert reply.json()["status_code"] == 1000, reply.text


async def test_registry_connect_refuses_an_internal_versions_url(store: PartyStore, redis_url: str) -> None:
    result = await run_ocpi_hub(
        "registry",
        "--redis-url",
        redis_url,
        "connect",
        "--versions-url",
        "http://169.254.169.254/latest/meta-data",
        "--token-a",
        "abc",
        "--party",
        "NL:CPO:CPO",
        env=hub_env(key_prefix=store.keys.prefix, allow_party_networks=""),
    )
    assert result.returncode != 0
    assert len(result.stderr_lines) == 1, str(result)
    assert NOT_PUBLIC in result.stderr
    with pytest.raises(Exception, match="unknown party"):
        await store.find(PartyKey("NL", "CPO"))  # nothing declared, nothing left behind


async def test_failed_registrations_with_one_token_a_are_limited(hub_factory: HubFactory, store: PartyStore) -> None:
    party = FakeParty([("NL", "CPO", "CPO")])
    async with hub_factory() as hub, party.running():
        token_a = await declare(store, party)
        await hub.synced(store)
        probe = party.my_credentials() | {"url": "http://10.9.8.7:22/"}  # someone probing through the hub
        for _ in range(5):
            reply = await post_credentials(hub.base_url, token_a, probe)
            assert reply.json()["status_code"] == 2001
        limited = await post_credentials(hub.base_url, token_a, party.my_credentials())  # even a good one, now
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) > 0
        assert party.versions_auth == []  # nothing was called for any of them
        assert "10.9.8.7" not in hub.dialed()
        # Another platform's token A is not affected.
        other = FakeParty([("DE", "OTH", "CPO")])
        async with other.running():
            other_token = await declare(store, other)
            await hub.synced(store)
            assert (await other.register(hub.versions_url, other_token)).json()["status_code"] == 1000
