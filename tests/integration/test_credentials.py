"""Credentials module and registration against a real Redis and real HTTP on loopback (credentials §7)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from registry.audit import Actor
from registry.store import PartyStore
from routing.model import ConnectionStatus, PartyKey, PartyRole
from tests.support.fake_party import FakeParty, token_header
from tests.support.hubs import RunningHub, connect_party
from tests.support.processes import hub_env, ocpi_hub_executable
from tests.support.servers import refusing_port, serve

#: Who the test's registry changes are made by (audit events name an actor).
TEST_ACTOR = Actor.cli("test", "localhost")

pytestmark = pytest.mark.integration


@pytest.fixture
async def cpo() -> AsyncIterator[FakeParty]:
    async with FakeParty([("NL", "CPO", "CPO")], name="cpo").running() as party:
        yield party


async def declare(store: PartyStore, party: FakeParty, hub: RunningHub) -> str:
    _, token_a = await store.declare(
        [PartyRole.parse(f"{c}:{p}:{r}") for c, p, r in party.roles], party.name, actor=TEST_ACTOR
    )
    await hub.synced(store)
    return token_a


async def test_party_initiated_registration(
    hub: RunningHub, store: PartyStore, cpo: FakeParty, client: httpx.AsyncClient
) -> None:
    token_a = await declare(store, cpo, hub)
    reply = await cpo.register(hub.versions_url, token_a)
    assert reply.status_code == 200
    body = reply.json()
    assert body["status_code"] == 1000
    data = body["data"]
    # The hub reports only itself, as role HUB (credentials §7.3.1).
    assert data["roles"] == [
        {"role": "HUB", "party_id": "HUB", "country_code": "ZZ", "business_details": {"name": "ocpi-hub"}}
    ]
    assert data["url"] == hub.versions_url
    token_c = data["token"]
    assert token_c and token_c != token_a
    # The hub fetched our versions and details with our token B, Base64 as we used it.
    assert cpo.versions_auth == [token_header(cpo.token_b)]

    record = await store.find(PartyKey("NL", "CPO"))
    assert record.status is ConnectionStatus.CONNECTED
    assert record.registered and record.token_b == cpo.token_b
    assert {(e.identifier, e.role) for e in record.endpoints} >= {("locations", "SENDER"), ("credentials", "SENDER")}
    assert token_c not in str(await store.redis.hgetall(store.keys.tokens()))  # digests only

    # Token A stops working once used; token C works.
    versions = hub.versions_url
    assert (await client.get(versions, headers={"Authorization": token_header(token_a)})).status_code == 401
    assert (await client.get(versions, headers={"Authorization": token_header(token_c)})).status_code == 200
    again = await client.get(hub.url("/ocpi/2.2.1/credentials"), headers={"Authorization": token_header(token_c)})
    assert again.json()["data"]["token"] == token_c


async def test_405_rules(hub: RunningHub, store: PartyStore, cpo: FakeParty, client: httpx.AsyncClient) -> None:
    token_a = await declare(store, cpo, hub)
    credentials = hub.url("/ocpi/2.2.1/credentials")
    as_a = {"Authorization": token_header(token_a)}
    # PUT and DELETE by an unregistered platform → 405 (§7.2.3, §7.2.4).
    put = await client.put(credentials, headers=as_a, json=cpo.my_credentials())
    assert put.status_code == 405
    assert put.json()["status_code"] == 2000
    assert (await client.delete(credentials, headers=as_a)).status_code == 405
    await cpo.register(hub.versions_url, token_a)
    # POST by a registered platform → 405 (§7.2.2).
    as_c = {"Authorization": token_header(cpo.hub_token)}
    assert (await client.post(credentials, headers=as_c, json=cpo.my_credentials())).status_code == 405


async def test_token_a_is_refused_on_functional_modules(
    hub: RunningHub, store: PartyStore, cpo: FakeParty, client: httpx.AsyncClient
) -> None:
    token_a = await declare(store, cpo, hub)
    reply = await client.get(
        hub.url("/ocpi/2.2.1/sender/locations"),
        headers={
            "Authorization": token_header(token_a),
            "OCPI-from-country-code": "NL",
            "OCPI-from-party-id": "CPO",
            "OCPI-to-country-code": "NL",
            "OCPI-to-party-id": "CPO",
        },
    )
    assert reply.status_code == 401
    assert reply.json()["status_code"] == 2000


async def test_put_rotates_token_and_refetches(
    hub: RunningHub, store: PartyStore, cpo: FakeParty, client: httpx.AsyncClient
) -> None:
    await connect_party(store, hub, cpo)
    old = cpo.hub_token
    cpo.publish = {("locations", "SENDER"), ("tariffs", "SENDER")}
    cpo.token_b = "rotated-token-b"
    reply = await cpo.register(hub.versions_url, old, method="PUT")
    assert reply.json()["status_code"] == 1000
    new = cpo.hub_token
    assert new != old
    versions = hub.versions_url
    assert (await client.get(versions, headers={"Authorization": token_header(old)})).status_code == 401
    assert (await client.get(versions, headers={"Authorization": token_header(new)})).status_code == 200
    record = await store.find(PartyKey("NL", "CPO"))
    assert record.token_b == "rotated-token-b"
    assert ("tariffs", "SENDER") in {(e.identifier, e.role) for e in record.endpoints}
    assert ("sessions", "SENDER") not in {(e.identifier, e.role) for e in record.endpoints}


async def test_delete_unregisters(
    hub: RunningHub, store: PartyStore, cpo: FakeParty, client: httpx.AsyncClient
) -> None:
    await connect_party(store, hub, cpo)
    auth = {"Authorization": token_header(cpo.hub_token)}
    reply = await client.delete(hub.url("/ocpi/2.2.1/credentials"), headers=auth)
    assert reply.json()["status_code"] == 1000
    assert (await client.get(hub.versions_url, headers=auth)).status_code == 401
    record = await store.find(PartyKey("NL", "CPO"))
    assert record.status is ConnectionStatus.SUSPENDED and not record.registered


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'"text"', b'{"token": "x", "url": "ftp://x", "roles": []}', b'{"token": "a b"}'],
)
async def test_malformed_credentials_are_400_2001_and_store_nothing(
    hub: RunningHub, store: PartyStore, cpo: FakeParty, client: httpx.AsyncClient, body: bytes
) -> None:
    token_a = await declare(store, cpo, hub)
    reply = await client.post(
        hub.url("/ocpi/2.2.1/credentials"),
        headers={"Authorization": token_header(token_a), "Content-Type": "application/json"},
        content=body,
    )
    assert reply.status_code == 400
    assert reply.json()["status_code"] == 2001
    assert "Traceback" not in reply.text
    await assert_untouched(store, hub, token_a, client)


async def assert_untouched(store: PartyStore, hub: RunningHub, token_a: str, client: httpx.AsyncClient) -> None:
    record = await store.find(PartyKey("NL", "CPO"))
    assert record.status is ConnectionStatus.PLANNED and not record.registered and not record.endpoints
    # Token A still works: nothing was consumed.
    assert (await client.get(hub.versions_url, headers={"Authorization": token_header(token_a)})).status_code == 200


async def test_unreachable_versions_url_is_3001(
    hub_factory: object, store: PartyStore, client: httpx.AsyncClient
) -> None:
    hung_up = asyncio.Event()  # set when the test is done: the silent server's handler may end then

    async def slow(_request: object) -> Response:
        await asyncio.wait_for(hung_up.wait(), 30)  # well past the 1 s forward timeout
        return Response(b"late")

    async def html(_request: object) -> Response:
        return Response(b"<html>hello</html>", media_type="text/html")

    app = Starlette(routes=[Route("/slow", slow), Route("/html", html)])
    with refusing_port() as closed:  # bound, never listening: connections are refused
        async with (
            serve(app, lifespan="off") as port,
            hub_factory(forward_timeout=1.0) as running,  # type: ignore[operator]
        ):
            closed_url = f"http://127.0.0.1:{closed}/ocpi/versions"
            for url in (closed_url, f"http://127.0.0.1:{port}/slow", f"http://127.0.0.1:{port}/html"):
                party = FakeParty([("NL", "CPO", "CPO")])
                token_a = await declare(store, party, running)
                credentials = party.my_credentials() | {"url": url}
                started = time.monotonic()
                reply = await client.post(
                    running.url("/ocpi/2.2.1/credentials"),
                    headers={"Authorization": token_header(token_a)},
                    json=credentials,
                )
                assert time.monotonic() - started < 1.0 + 0.5, url
                assert reply.status_code == 200
                assert reply.json()["status_code"] == 3001, reply.text
                await assert_untouched(store, running, token_a, client)
                await store.remove((await store.find(PartyKey("NL", "CPO"))).id, actor=TEST_ACTOR)
            hung_up.set()


async def test_missing_endpoints_is_3003(hub: RunningHub, store: PartyStore, client: httpx.AsyncClient) -> None:
    async with FakeParty([("NL", "CPO", "CPO")], publish={("tariffs", "SENDER")}).running() as party:
        token_a = await declare(store, party, hub)
        reply = await party.register(hub.versions_url, token_a)
        assert reply.json()["status_code"] == 3003
        await assert_untouched(store, hub, token_a, client)


async def test_roles_differing_from_declaration_are_refused(
    hub: RunningHub, store: PartyStore, cpo: FakeParty, client: httpx.AsyncClient
) -> None:
    token_a = await declare(store, cpo, hub)
    cpo.roles = [("NL", "CPO", "CPO"), ("NL", "XYZ", "CPO")]
    reply = await cpo.register(hub.versions_url, token_a)
    assert reply.status_code == 400
    assert reply.json()["status_code"] == 2001
    cpo.roles = [("NL", "CPO", "CPO")]
    await assert_untouched(store, hub, token_a, client)


async def test_raw_token_peer_is_called_in_raw_form(
    hub: RunningHub, store: PartyStore, client: httpx.AsyncClient
) -> None:
    async with FakeParty([("DE", "OLD", "CPO")], raw_tokens=True).running() as party:
        _, token_a = await store.declare([PartyRole.parse("DE:OLD:CPO")], "old", actor=TEST_ACTOR)
        await hub.synced(store)
        reply = await party.register(hub.versions_url, token_a)
        assert reply.json()["status_code"] == 1000
        assert party.versions_auth == [f"Token {party.token_b}"]
        record = await store.find(PartyKey("DE", "OLD"))
        assert record.token_form.value == "RAW"
        raw = {"Authorization": f"Token {party.hub_token}"}
        assert (await client.get(hub.versions_url, headers=raw)).status_code == 200


@pytest.mark.parametrize("authorization", [None, "Token", "Bearer abc", "Token not-a-known-token", "Token !!!"])
async def test_bad_tokens_are_401_envelopes(
    hub: RunningHub, client: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for path in ("/ocpi/versions", "/ocpi/2.2.1/credentials", "/ocpi/2.2.1/sender/locations"):
        reply = await client.get(hub.url(path), headers=headers)
        assert reply.status_code == 401, path
        assert reply.json()["status_code"] == 2000
        assert reply.headers["x-request-id"]


async def test_hub_initiated_connect(hub: RunningHub, store: PartyStore, redis_url: str) -> None:
    async with FakeParty([("BE", "EMP", "EMSP")], name="emsp").running() as party:
        process = await asyncio.create_subprocess_exec(
            ocpi_hub_executable(),
            "registry",
            "--redis-url",
            redis_url,
            "--public-url",
            hub.base_url,
            "connect",
            "--versions-url",
            party.versions_url,
            "--token-a",
            party.token_a_for_hub,
            "--party",
            "BE:EMP:EMSP",
            "--json",
            env=_env(store),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err.decode()
        record = await store.find(PartyKey("BE", "EMP"))
        assert record.status is ConnectionStatus.CONNECTED and record.token_b == party.token_b
        # The party holds the token the hub issued and can use it on functional modules' versions.
        async with httpx.AsyncClient() as client:
            ok = await client.get(hub.versions_url, headers={"Authorization": token_header(party.hub_token)})
        assert ok.status_code == 200


def _env(store: PartyStore) -> dict[str, str]:
    return hub_env(key_prefix=store.keys.prefix)
