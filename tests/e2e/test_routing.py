"""Routing through the real hub: fake CPO and eMSP apps on loopback, real Redis (digest §2, §5; issue: routing)."""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import httpx
import orjson
import pytest
from starlette.responses import Response

from registry.audit import Actor
from registry.store import PartyStore
from routing.model import PartyKey
from tests.support.fake_party import FakeParty, Received, ocpi, token_header
from tests.support.hubs import RunningHub, connect_party, connected

#: Who the test's registry changes are made by (audit events name an actor).
TEST_ACTOR = Actor.cli("test", "localhost")

pytestmark = pytest.mark.e2e

CPO = ("NL", "CPO")
EMSP = ("BE", "EMP")


@dataclass
class World:
    hub: RunningHub
    store: PartyStore
    cpo: FakeParty
    emsp: FakeParty
    client: httpx.AsyncClient

    async def send(
        self,
        sender: FakeParty,
        to: tuple[str, str],
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        all_headers = sender.headers_to(to) | (headers or {})
        if body is not None:
            all_headers.setdefault("Content-Type", "application/json")
        return await self.client.request(method, self.hub.url(path), headers=all_headers, content=body)


@pytest.fixture
async def world(hub: RunningHub, store: PartyStore, client: httpx.AsyncClient) -> AsyncIterator[World]:
    cpo = FakeParty([("NL", "CPO", "CPO")], name="cpo")
    emsp = FakeParty([("BE", "EMP", "EMSP")], name="emsp")
    async with connected(store, hub, cpo, emsp):
        yield World(hub, store, cpo, emsp, client)


# Every (module, interface role, method) of digest §5.3 that is a plain direct request.
# (sender, module, hub interface segment, method, suffix, query, body?)
DIRECT_CASES = [
    ("emsp", "locations", "sender", "GET", "", "date_from=2026-01-01T00:00:00Z&offset=0&limit=10", False),
    ("emsp", "locations", "sender", "GET", "/LOC1/EVSE1/1", "", False),
    ("cpo", "locations", "receiver", "GET", "/NL/CPO/LOC1", "", False),
    ("cpo", "locations", "receiver", "PUT", "/NL/CPO/LOC1", "", True),
    ("cpo", "locations", "receiver", "PATCH", "/NL/CPO/LOC1/EVSE1", "", True),
    ("emsp", "sessions", "sender", "GET", "", "date_from=2026-01-01T00:00:00Z", False),
    ("emsp", "sessions", "sender", "PUT", "/S1/charging_preferences", "", True),
    ("cpo", "sessions", "receiver", "GET", "/NL/CPO/S1", "", False),
    ("cpo", "sessions", "receiver", "PUT", "/NL/CPO/S1", "", True),
    ("cpo", "sessions", "receiver", "PATCH", "/NL/CPO/S1", "", True),
    ("emsp", "cdrs", "sender", "GET", "", "offset=0&limit=50", False),
    ("emsp", "tariffs", "sender", "GET", "", "limit=5", False),
    ("cpo", "tariffs", "receiver", "GET", "/NL/CPO/T1", "", False),
    ("cpo", "tariffs", "receiver", "PUT", "/NL/CPO/T1", "", True),
    ("cpo", "tariffs", "receiver", "DELETE", "/NL/CPO/T1", "", False),
    ("emsp", "tokens", "receiver", "GET", "/BE/EMP/TOK1", "type=RFID", False),
    ("emsp", "tokens", "receiver", "PUT", "/BE/EMP/TOK1", "type=RFID", True),
    ("emsp", "tokens", "receiver", "PATCH", "/BE/EMP/TOK1", "", True),
    ("cpo", "tokens", "sender", "GET", "", "offset=10&limit=10", False),
    ("cpo", "tokens", "sender", "POST", "/TOK%201/authorize", "type=RFID", True),
    ("cpo", "chargingprofiles", "sender", "PUT", "/S1", "", True),
    ("cpo", "cdrs", "receiver", "POST", "", "", True),
]


@pytest.mark.parametrize(("who", "module", "segment", "method", "suffix", "query", "has_body"), DIRECT_CASES)
async def test_direct_request_reaches_the_right_endpoint_unchanged(
    world: World, who: str, module: str, segment: str, method: str, suffix: str, query: str, has_body: bool
) -> None:
    sender, receiver = (world.cpo, world.emsp) if who == "cpo" else (world.emsp, world.cpo)
    to = receiver.party()
    body = (
        orjson.dumps({"id": "X1", "last_updated": "2026-01-01T00:00:00Z", "note": "ünïcode", "n": 1.50})
        if has_body
        else None
    )
    if body is not None:
        body = body.replace(b",", b" ,  ")  # odd spacing: a re-serialised body would differ
    answer = b'{"data":{"who":"receiver"},"status_code":1000,"timestamp":"2026-01-01T00:00:00Z"}  '
    receiver.responder = lambda r: Response(
        answer,
        status_code=201 if method == "POST" else 200,
        media_type="application/json",
        headers={"X-Total-Count": "7", "X-Limit": "5", "X-Request-ID": r.headers["x-request-id"]},
    )
    path = f"/ocpi/2.2.1/{segment}/{module}{suffix}" + (f"?{query}" if query else "")
    request_id = secrets.token_hex(8)
    reply = await world.send(sender, to, method, path, body, {"X-Request-ID": request_id})

    # What the sender got: the receiver's status, headers and body, with its own X-Request-ID.
    assert reply.status_code == (201 if method == "POST" else 200)
    assert reply.content == answer
    assert reply.headers["x-request-id"] == request_id
    assert reply.headers["x-total-count"] == "7"
    assert reply.headers["x-limit"] == "5"
    assert reply.headers["content-type"] == "application/json"

    # What the receiver got.
    assert len(receiver.received) == 1
    got = receiver.received[0]
    role = "SENDER" if segment == "sender" else "RECEIVER"
    assert got.method == method
    assert got.path == receiver.endpoint_url(module, role).removeprefix(receiver.base_url) + suffix.replace("%20", " ")
    assert got.query == query
    assert got.body == (body or b"")
    sent = sender.headers_to(to)
    assert got.headers["authorization"] == token_header(receiver.token_b)
    assert got.headers["x-request-id"] != request_id
    assert len(got.headers["x-request-id"]) == 36
    for name in ("ocpi-from-country-code", "ocpi-from-party-id", "ocpi-to-country-code", "ocpi-to-party-id"):
        assert got.headers[name] == sent[name.replace("ocpi", "OCPI")], name
    if body is not None:
        assert got.headers["content-type"] == "application/json"
    assert not sender.received  # nothing came back to the sender's own endpoints


async def test_correlation_id_is_kept_or_created(world: World) -> None:
    reply = await world.send(
        world.emsp, CPO, "GET", "/ocpi/2.2.1/sender/locations", None, {"X-Correlation-ID": "corr-1"}
    )
    assert world.cpo.received[-1].headers["x-correlation-id"] == "corr-1"
    assert reply.headers["x-correlation-id"] == "corr-1"
    headers = world.emsp.headers_to(CPO)
    del headers["X-Correlation-ID"]
    reply = await world.client.get(world.hub.url("/ocpi/2.2.1/sender/locations"), headers=headers)
    created = world.cpo.received[-1].headers["x-correlation-id"]
    assert len(created) == 36
    assert reply.headers["x-correlation-id"] == created


async def test_receiver_errors_pass_through_unchanged(world: World) -> None:
    answer = b'{"status_code":2004,"status_message":"Unknown Token","timestamp":"2026-01-01T00:00:00Z"}'
    world.emsp.responder = lambda _r: Response(answer, status_code=404, media_type="application/json")
    reply = await world.send(world.cpo, EMSP, "POST", "/ocpi/2.2.1/sender/tokens/NOPE/authorize", b"{}")
    assert reply.status_code == 404
    assert reply.content == answer


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [("text/html", b"<html><body>Bad Gateway</body></html>", 502), ("application/json", b"{not json", 200)],
)
async def test_html_or_invalid_json_from_receiver_passes_through(
    world: World, content_type: str, body: bytes, status: int
) -> None:
    world.cpo.responder = lambda _r: Response(body, status_code=status, media_type=content_type)
    reply = await world.send(world.emsp, CPO, "GET", "/ocpi/2.2.1/sender/locations")
    assert reply.status_code == status
    assert reply.content == body
    assert reply.headers["content-type"].startswith(content_type)
    world.cpo.responder = None
    ok = await world.send(world.emsp, CPO, "GET", "/ocpi/2.2.1/sender/tariffs")
    assert ok.status_code == 200  # and the hub goes on serving


async def test_trailing_slashes_are_tolerated(world: World) -> None:
    reply = await world.send(world.emsp, CPO, "GET", "/ocpi/2.2.1/sender/locations/?offset=0")
    assert reply.status_code == 200
    assert world.cpo.received[-1].path == "/ocpi/2.2.1/locations/sender"
    assert world.cpo.received[-1].query == "offset=0"
    reply = await world.send(world.cpo, EMSP, "PUT", "/ocpi/2.2.1/receiver/locations/NL/CPO/L1/", b"{}")
    assert reply.status_code == 200
    assert world.emsp.received[-1].path == "/ocpi/2.2.1/locations/receiver/NL/CPO/L1"


async def test_case_insensitive_routing_headers(world: World) -> None:
    headers = world.emsp.headers_to(("nl", "cpo"))
    headers = {k.lower(): v.lower() if k.startswith("OCPI") else v for k, v in headers.items()}
    reply = await world.client.get(world.hub.url("/ocpi/2.2.1/sender/locations"), headers=headers)
    assert reply.status_code == 200
    assert reply.json()["data"]["party"] == ["NL", "CPO"]


# -- rewritten URLs ----------------------------------------------------------------------------------------------


async def test_pagination_link_goes_through_the_hub(world: World, store: PartyStore) -> None:
    cpo_list = world.cpo.endpoint_url("locations", "SENDER")

    def pages(r: Received) -> Response:
        if "offset=2" in r.query:
            return ocpi([{"id": "L3"}], headers={"X-Total-Count": "3", "X-Limit": "2"})
        link = f'<{cpo_list}?offset=2&limit=2&date_from=2026-01-01T00:00:00Z>; rel="next"'
        return ocpi([{"id": "L1"}, {"id": "L2"}], headers={"Link": link, "X-Total-Count": "3", "X-Limit": "2"})

    world.cpo.responder = pages
    first = await world.send(
        world.emsp, CPO, "GET", "/ocpi/2.2.1/sender/locations?limit=2&date_from=2026-01-01T00:00:00Z"
    )
    link = first.headers["link"]
    assert link.startswith(f"<{world.hub.base_url}/ocpi/2.2.1/relay/")
    assert link.endswith('>; rel="next"')
    assert world.cpo.base_url not in link
    # The receiver's query is readable and unchanged (transport_and_format §4.1.4.1: the filters stay).
    assert link.endswith('?offset=2&limit=2&date_from=2026-01-01T00:00:00Z>; rel="next"')
    next_url = link[1 : link.index(">")]
    # The next page, fetched with the sender's own token (routing headers repeated or not), from the same CPO.
    second = await world.client.get(next_url, headers={"Authorization": token_header(world.emsp.hub_token)})
    assert second.status_code == 200
    assert second.json()["data"] == [{"id": "L3"}]
    assert "link" not in second.headers
    got = world.cpo.received[-1]
    assert got.query == "offset=2&limit=2&date_from=2026-01-01T00:00:00Z"
    assert got.headers["authorization"] == token_header(world.cpo.token_b)
    assert got.headers["ocpi-to-party-id"] == "CPO"
    assert got.headers["ocpi-from-party-id"] == "EMP"
    # Nobody else may use it: the CPO itself gets 404.
    other = await world.client.get(next_url, headers={"Authorization": token_header(world.cpo.hub_token)})
    assert other.status_code == 404
    assert len(world.cpo.received) == 2


async def test_cdr_location_goes_through_the_hub(world: World) -> None:
    cdr_url = world.emsp.base_url + "/ocpi/2.2.1/cdrs/receiver/CDR-1"

    def store_cdr(r: Received) -> Response:
        if r.method == "POST":
            return ocpi(http_status=201, headers={"Location": cdr_url})
        return ocpi({"id": "CDR-1"})

    world.emsp.responder = store_cdr
    posted = await world.send(world.cpo, EMSP, "POST", "/ocpi/2.2.1/receiver/cdrs", b'{"id":"CDR-1"}')
    assert posted.status_code == 201
    location = posted.headers["location"]
    assert location.startswith(world.hub.base_url + "/ocpi/2.2.1/relay/")
    fetched = await world.client.get(location, headers=world.cpo.headers_to(EMSP))
    assert fetched.json()["data"] == {"id": "CDR-1"}
    assert world.emsp.received[-1].path == "/ocpi/2.2.1/cdrs/receiver/CDR-1"
    assert world.emsp.received[-1].method == "GET"


async def test_command_response_url_round_trip(world: World, store: PartyStore) -> None:
    original = world.emsp.base_url + "/ocpi/2.2.1/commands/sender/START_SESSION/42"
    body = b'{"response_url": "' + original.encode() + b'", "token": {"uid": "T1"},  "location_id": "LOC1"}'
    reply = await world.send(world.emsp, CPO, "POST", "/ocpi/2.2.1/receiver/commands/START_SESSION", body)
    assert reply.json()["status_code"] == 1000
    got = world.cpo.received[-1]
    assert got.path == "/ocpi/2.2.1/commands/receiver/START_SESSION"
    rewritten = got.json["response_url"]
    assert rewritten.startswith(world.hub.base_url + "/ocpi/2.2.1/relay/")
    # Only the URL changed: every other byte is as the eMSP wrote it.
    assert got.body == body.replace(original.encode(), rewritten.encode())

    # A second CPO may not use the callback; nothing reaches the eMSP.
    async with FakeParty([("DE", "OTH", "CPO")], name="other").running() as other:
        await connect_party(store, world.hub, other)
        stolen = await world.client.post(rewritten, headers=other.headers_to(EMSP), json={"result": "ACCEPTED"})
        assert stolen.status_code == 404
    assert not world.emsp.received

    result = await world.client.post(rewritten, headers=world.cpo.headers_to(EMSP), json={"result": "ACCEPTED"})
    assert result.json()["status_code"] == 1000
    callback = world.emsp.received[-1]
    assert callback.method == "POST"
    assert callback.path == "/ocpi/2.2.1/commands/sender/START_SESSION/42"
    assert callback.json == {"result": "ACCEPTED"}
    assert callback.headers["authorization"] == token_header(world.emsp.token_b)
    assert callback.headers["ocpi-to-party-id"] == "EMP"


async def test_charging_profile_response_urls(world: World) -> None:
    original = world.emsp.base_url + "/ocpi/2.2.1/chargingprofiles/sender/result/7"
    query = httpx.QueryParams({"duration": "900", "response_url": original})
    await world.send(world.emsp, CPO, "GET", f"/ocpi/2.2.1/receiver/chargingprofiles/S1?{query}")
    got = httpx.QueryParams(world.cpo.received[-1].query)
    assert got["duration"] == "900"
    assert got["response_url"].startswith(world.hub.base_url + "/ocpi/2.2.1/relay/")
    await world.send(world.emsp, CPO, "DELETE", f"/ocpi/2.2.1/receiver/chargingprofiles/S1?response_url={original}")
    assert httpx.QueryParams(world.cpo.received[-1].query)["response_url"].startswith(world.hub.base_url)
    put = orjson.dumps({"charging_profile": {"charging_rate_unit": "W"}, "response_url": original})
    await world.send(world.emsp, CPO, "PUT", "/ocpi/2.2.1/receiver/chargingprofiles/S1", put)
    relay = world.cpo.received[-1].json["response_url"]
    result = await world.client.post(relay, headers=world.cpo.headers_to(EMSP), json={"result": "ACCEPTED"})
    assert result.status_code == 200
    assert world.emsp.received[-1].path == "/ocpi/2.2.1/chargingprofiles/sender/result/7"


# -- hub errors ---------------------------------------------------------------------------------------------------


async def test_unknown_receiver_is_4001(world: World) -> None:
    reply = await world.send(world.emsp, ("FR", "NOP"), "GET", "/ocpi/2.2.1/sender/locations")
    assert reply.status_code == 200
    body = reply.json()
    assert body["status_code"] == 4001
    assert "data" not in body
    assert reply.headers["ocpi-from-party-id"] == "HUB"
    assert reply.headers["ocpi-to-party-id"] == "EMP"


async def test_receiver_timeout_is_4002_within_the_timeout(
    hub_factory: object, store: PartyStore, client: httpx.AsyncClient
) -> None:
    async def slow(_r: Received) -> Response:
        await asyncio.sleep(2.0)
        return ocpi()

    async with hub_factory(forward_timeouts={"locations": 0.5}) as running:  # type: ignore[operator]
        cpo = FakeParty([("NL", "CPO", "CPO")], responder=slow)
        emsp = FakeParty([("BE", "EMP", "EMSP")])
        async with cpo.running(), emsp.running():
            await connect_party(store, running, cpo)
            await connect_party(store, running, emsp)
            await running.synced(store)
            started = time.monotonic()
            reply = await client.get(running.url("/ocpi/2.2.1/sender/locations"), headers=emsp.headers_to(CPO))
            elapsed = time.monotonic() - started
            assert reply.json()["status_code"] == 4002
            assert 0.5 <= elapsed < 0.5 + 0.3
            # Other modules keep the default timeout and still work.
            cpo.responder = None
            assert (
                await client.get(running.url("/ocpi/2.2.1/sender/tariffs"), headers=emsp.headers_to(CPO))
            ).status_code == 200


async def test_closed_port_is_4003(hub: RunningHub, store: PartyStore, client: httpx.AsyncClient) -> None:
    emsp = FakeParty([("BE", "EMP", "EMSP")])
    async with emsp.running():
        cpo = FakeParty([("NL", "CPO", "CPO")])
        async with cpo.running():
            await connect_party(store, hub, cpo)
            await connect_party(store, hub, emsp)
            await hub.synced(store)
        # The CPO's server is gone: its port refuses connections.
        started = time.monotonic()
        reply = await client.get(hub.url("/ocpi/2.2.1/sender/locations"), headers=emsp.headers_to(CPO))
        assert reply.json()["status_code"] == 4003
        assert time.monotonic() - started < 1.0


async def test_suspended_receiver_is_4003_without_contact(world: World) -> None:
    record = await world.store.find(PartyKey(*CPO))
    await world.store.suspend(record.id, actor=TEST_ACTOR)
    await world.hub.synced(world.store)
    reply = await world.send(world.emsp, CPO, "GET", "/ocpi/2.2.1/sender/locations")
    assert reply.json()["status_code"] == 4003
    assert not world.cpo.received
    # And the suspended platform cannot send either.
    sent = await world.send(world.cpo, EMSP, "GET", "/ocpi/2.2.1/receiver/locations/NL/CPO/L1")
    assert sent.status_code == 403
    assert not world.emsp.received


async def test_missing_endpoint_is_4003(hub: RunningHub, store: PartyStore, client: httpx.AsyncClient) -> None:
    cpo = FakeParty([("NL", "CPO", "CPO")], publish={("locations", "SENDER")})
    emsp = FakeParty([("BE", "EMP", "EMSP")])
    async with cpo.running(), emsp.running():
        await connect_party(store, hub, cpo)
        await connect_party(store, hub, emsp)
        await hub.synced(store)
        reply = await client.get(hub.url("/ocpi/2.2.1/sender/tariffs"), headers=emsp.headers_to(CPO))
        assert reply.json()["status_code"] == 4003
        assert not cpo.received


@pytest.mark.parametrize(
    "override",
    [
        {"OCPI-from-country-code": "NL", "OCPI-from-party-id": "CPO"},  # someone else's identity
        {"OCPI-from-party-id": "XXX"},
    ],
)
async def test_spoofed_sender_is_2001_and_not_forwarded(world: World, override: dict[str, str]) -> None:
    reply = await world.send(world.emsp, CPO, "GET", "/ocpi/2.2.1/sender/locations", None, override)
    assert reply.status_code == 400
    assert reply.json()["status_code"] == 2001
    assert not world.cpo.received


@pytest.mark.parametrize("missing", ["OCPI-to-party-id", "OCPI-from-country-code"])
async def test_missing_routing_headers_are_2001(world: World, missing: str) -> None:
    headers = world.emsp.headers_to(CPO)
    del headers[missing]
    reply = await world.client.get(world.hub.url("/ocpi/2.2.1/sender/locations"), headers=headers)
    assert reply.json()["status_code"] == 2001
    assert not world.cpo.received


# -- bad input ----------------------------------------------------------------------------------------------------


async def test_bad_input_gets_envelopes_and_the_hub_keeps_serving(world: World) -> None:
    cases: list[tuple[dict[str, str | bytes], int, int]] = [
        ({"OCPI-to-party-id": "C\u00d6O".encode("latin-1")}, 400, 2001),  # non-ASCII
        ({"OCPI-to-party-id": "CPOCPO"}, 400, 2001),  # overlong routing id
        ({"X-Request-ID": "r" * 1000}, 400, 2001),  # overlong id
        ({"X-Correlation-ID": b"abc\x01def"}, 400, 2001),  # control character
        ({"Authorization": "Token %%%not-base64%%%"}, 401, 2000),  # invalid base64, unknown raw token
    ]
    for override, http_status, code in cases:
        headers = {k.encode(): v.encode() for k, v in world.emsp.headers_to(CPO).items()}
        headers.update({k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in override.items()})
        reply = await world.client.get(world.hub.url("/ocpi/2.2.1/sender/locations"), headers=headers)
        assert reply.status_code == http_status, override
        assert reply.json()["status_code"] == code, override
        assert "Traceback" not in reply.text
    unknown = await world.send(world.emsp, CPO, "GET", "/ocpi/2.2.1/sender/parking")
    assert unknown.status_code == 404
    assert unknown.json()["status_code"] == 2000
    assert not world.cpo.received
    assert (await world.send(world.emsp, CPO, "GET", "/ocpi/2.2.1/sender/locations")).status_code == 200


async def test_header_with_bare_cr_is_refused(world: World) -> None:
    """A CR inside a header value is refused by the HTTP parser, still with an OCPI envelope."""
    host, port = "127.0.0.1", int(world.hub.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection(host, port)
    auth = token_header(world.emsp.hub_token)
    writer.write(
        f"GET /ocpi/2.2.1/sender/locations HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
        "OCPI-to-country-code: NL\r\nOCPI-to-party-id: C\rPO\r\nOCPI-from-country-code: BE\r\n"
        "OCPI-from-party-id: EMP\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 400")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head
    assert orjson.loads(body)["status_code"] == 2001
    assert not world.cpo.received
    assert (await world.send(world.emsp, CPO, "GET", "/ocpi/2.2.1/sender/locations")).status_code == 200


async def test_body_over_the_limit_is_413(hub_factory: object, store: PartyStore, client: httpx.AsyncClient) -> None:
    async with hub_factory(max_body_size=1024) as running:  # type: ignore[operator]
        cpo, emsp = FakeParty([("NL", "CPO", "CPO")]), FakeParty([("BE", "EMP", "EMSP")])
        async with cpo.running(), emsp.running():
            await connect_party(store, running, cpo)
            await connect_party(store, running, emsp)
            await running.synced(store)
            url = running.url("/ocpi/2.2.1/receiver/locations/NL/CPO/L1")
            big = b'{"x":"' + b"a" * 2000 + b'"}'
            reply = await client.put(url, headers=cpo.headers_to(EMSP), content=big)
            assert reply.status_code == 413
            assert reply.json()["status_code"] == 2001

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
                for _ in range(4):
                    yield b"a" * 400

            reply = await client.put(url, headers=cpo.headers_to(EMSP), content=chunks())
            assert reply.status_code == 413
            assert not emsp.received
            small = await client.put(url, headers=cpo.headers_to(EMSP), content=b'{"x":1}')
            assert small.status_code == 200


# -- concurrency --------------------------------------------------------------------------------------------------


async def test_500_concurrent_requests_no_crosstalk(hub_factory: object, store: PartyStore) -> None:
    receivers = [FakeParty([(cc, pid, "CPO")], name=pid) for cc, pid in (("NL", "AAA"), ("NL", "BBB"), ("NL", "CCC"))]
    emsp = FakeParty([("BE", "EMP", "EMSP")])

    def echo(party: FakeParty) -> object:
        async def respond(r: Received) -> Response:
            await asyncio.sleep(0.001 * (hash(r.headers["x-correlation-id"]) % 5))
            data = {"party": party.party()[1], "corr": r.headers["x-correlation-id"], "body": r.body.decode()}
            return ocpi(data, headers={"X-Correlation-ID": r.headers["x-correlation-id"]})

        return respond

    for party in receivers:
        party.responder = echo(party)  # type: ignore[assignment]
    # Hub, parties and client share one event loop here: a generous timeout, this test is about crosstalk.
    async with (
        hub_factory(forward_timeout=60.0) as hub,  # type: ignore[operator]
        receivers[0].running(),
        receivers[1].running(),
        receivers[2].running(),
        emsp.running(),
    ):
        for party in (*receivers, emsp):
            await connect_party(store, hub, party)
        await hub.synced(store)
        # aiohttp as the load client: httpx's pool is the bottleneck at 500 concurrent connections.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=500)) as session:

            async def one(i: int) -> None:
                target = receivers[i % 3]
                corr = f"c-{i}-{secrets.token_hex(4)}"
                body = f'{{"n": {i}}}'.encode()
                headers = emsp.headers_to(target.party())
                headers |= {"X-Correlation-ID": corr, "X-Request-ID": f"r-{i}"}
                url = hub.url(f"/ocpi/2.2.1/receiver/locations/NL/CPO/L{i}")
                async with session.put(url, headers=headers, data=body) as reply:
                    answer = await reply.json()
                    assert reply.headers["x-request-id"] == f"r-{i}"
                assert answer.get("data") == {"party": target.party()[1], "corr": corr, "body": body.decode()}, answer

            await asyncio.gather(*(one(i) for i in range(510)))
        assert sum(len(p.received) for p in receivers) == 510
        assert all(len(p.received) == 170 for p in receivers)


def _b64(token: str) -> str:
    return base64.b64encode(token.encode()).decode()


# -- abuse the hub refuses ---------------------------------------------------------------------------------------


async def test_a_repeated_routing_header_is_refused(world: World) -> None:
    """One copy checked and another read by the receiver would be impersonation."""
    spoof = [("OCPI-from-party-id", "CPO"), ("OCPI-from-country-code", "NL")]
    headers = [*world.emsp.headers_to(CPO).items(), *spoof]
    reply = await world.client.get(world.hub.url("/ocpi/2.2.1/sender/locations"), headers=headers)
    assert reply.status_code == 400
    assert reply.json()["status_code"] == 2001
    assert not world.cpo.received


@pytest.mark.parametrize("suffix", ["/../credentials", "/%2e%2e/credentials", "/a/./b", "/a//b", "/a%2Fb"])
async def test_paths_that_could_leave_the_endpoint_are_refused(world: World, suffix: str) -> None:
    # Written on the socket: HTTP clients remove dot segments before sending, an attacker's does not.
    port = int(world.hub.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET /ocpi/2.2.1/sender/locations{suffix} HTTP/1.1", "Host: x", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in world.emsp.headers_to(CPO).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert orjson.loads(body)["status_code"] == 2001
    assert not world.cpo.received


async def test_an_unknown_token_is_401_before_any_other_check(world: World) -> None:
    headers = world.emsp.headers_to(CPO) | {"Authorization": "Token bm9ib2R5", "OCPI-to-party-id": "TOOLONG"}
    reply = await world.client.get(world.hub.url("/ocpi/2.2.1/sender/locations"), headers=headers)
    assert reply.status_code == 401


async def test_response_url_on_another_host_is_refused(world: World) -> None:
    body = b'{"response_url": "http://169.254.169.254/latest/meta-data", "location_id": "L1"}'
    reply = await world.send(world.emsp, CPO, "POST", "/ocpi/2.2.1/receiver/commands/START_SESSION", body)
    assert reply.status_code == 400
    assert reply.json()["status_code"] == 2001
    assert not world.cpo.received
    assert "169.254.169.254" not in world.hub.dialed()  # refused before any connection was attempted


async def test_a_link_to_another_host_is_not_relayed(world: World) -> None:
    link = '<http://127.0.0.2:1/elsewhere?offset=2>; rel="next"'
    world.cpo.responder = lambda _r: ocpi([{"id": "L1"}], headers={"Link": link})
    reply = await world.send(world.emsp, CPO, "GET", "/ocpi/2.2.1/sender/locations")
    assert reply.status_code == 200
    assert "link" not in reply.headers  # a link nobody may follow through the hub is dropped


async def test_pagination_through_relays_without_routing_headers(world: World) -> None:
    base = world.cpo.endpoint_url("locations", "SENDER")

    def pages(r: Received) -> Response:
        offset = int(httpx.QueryParams(r.query).get("offset", "0"))
        headers = {"Link": f'<{base}?offset={offset + 1}&limit=1>; rel="next"'} if offset < 3 else {}
        return ocpi([{"id": f"L{offset}"}], headers=headers)

    world.cpo.responder = pages
    reply = await world.send(world.emsp, CPO, "GET", "/ocpi/2.2.1/sender/locations?limit=1")
    seen = [reply.json()["data"][0]["id"]]
    auth = {"Authorization": token_header(world.emsp.hub_token)}
    while "link" in reply.headers:
        reply = await world.client.get(reply.headers["link"][1 : reply.headers["link"].index(">")], headers=auth)
        assert reply.status_code == 200, reply.text
        seen.append(reply.json()["data"][0]["id"])
    assert seen == ["L0", "L1", "L2", "L3"]
