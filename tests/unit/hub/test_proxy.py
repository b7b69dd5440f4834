"""hub/proxy.py over httpx.ASGITransport: the real proxy, a real routing snapshot, a scripted receiver.

What a requester sends and what the receiver gets (headers forwarded and rewritten, ids, routing headers), what
comes back (the answer header allow-list, Link and response_url relays), and every refusal (401, 2001, 4001,
4003 by cause, 429) with its envelope and its metric label. No sockets, no Redis (tests/unit/hub/proxy_harness.py).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import orjson
import pytest

from routing.errors import ForwardTimeoutError, OverloadedError, ReceiverUnreachableError
from routing.model import PartyKey
from routing.owners import OwnerKind
from routing.paths import RELAY_PREFIX
from routing.relays import TOKEN_LENGTH, verify
from tests.unit.hub.proxy_harness import (
    CPO,
    EMSP,
    HUB,
    HUB_URL,
    LIMITED,
    MULTI,
    PLANNED,
    Answer,
    ConnectionCutError,
    Harness,
    Sent,
    envelope_of,
    headers_of,
    proxy_harness,
)

CPO_PARTY, EMSP_PARTY = CPO.parties[0], EMSP.parties[0]
UUID4 = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
SESSION = b'{"id":"S1",  "kwh": 1.5 ,"status":"ACTIVE"}'


@pytest.fixture
async def hub() -> AsyncIterator[Harness]:
    async with proxy_harness() as harness:
        yield harness


def put_session(**extra: str) -> dict[str, str]:
    """A CPO PUTting a session into an eMSP (both routing headers given, both request ids given)."""
    return headers_of(CPO, to=EMSP_PARTY, sender=CPO_PARTY, **extra)


SESSION_URL = "/ocpi/2.2.1/receiver/sessions/NL/CPO/S1"


# -- the forwarded request ----------------------------------------------------------------------------------------


async def test_a_routed_request_reaches_the_receivers_endpoint_byte_for_byte(hub: Harness) -> None:
    reply = await hub.client.put(SESSION_URL + "?x=1&y=%20", headers=put_session(), content=SESSION)
    assert reply.status_code == 200
    assert reply.content == b'{"status_code":1000,"timestamp":"2026-01-01T00:00:00Z"}'
    # Read whole, so framed by its own length (the receiver's framing headers never pass), not chunked.
    assert reply.headers["content-length"] == str(len(reply.content))
    assert "transfer-encoding" not in reply.headers
    [sent] = hub.outbound.sent
    assert (sent.method, sent.url) == ("PUT", EMSP.endpoint("sessions", "RECEIVER") + "/NL/CPO/S1?x=1&y=%20")
    assert sent.body == SESSION
    assert sent.timeout == hub.runtime.settings.timeout_for("sessions")
    assert hub.counted() == {("sessions", "RECEIVER", "ok"): 1.0}


async def test_the_receivers_own_token_goes_in_the_form_it_registered_with(hub: Harness) -> None:
    await hub.client.put(SESSION_URL, headers=put_session(), content=SESSION)
    assert hub.outbound.last.header(b"authorization") == b"Token token-b-emsp"  # raw, as it registered
    await hub.client.get("/ocpi/2.2.1/sender/locations", headers=headers_of(EMSP, to=CPO_PARTY, sender=EMSP_PARTY))
    assert hub.outbound.last.header(b"authorization") == b"Token dG9rZW4tYi1jcG8="  # base64 of token-b-cpo


async def test_a_new_request_id_goes_out_and_the_correlation_id_is_kept(hub: Harness) -> None:
    reply = await hub.client.put(
        SESSION_URL, headers=put_session(**{"X-Request-ID": "req-1", "X-Correlation-ID": "corr-1"}), content=SESSION
    )
    sent = hub.outbound.last
    request_id = sent.header(b"x-request-id")
    assert request_id is not None and UUID4.fullmatch(request_id)
    assert sent.header(b"x-correlation-id") == b"corr-1"
    # The requester gets its own ids back, not the receiver's.
    assert reply.headers["x-request-id"] == "req-1"
    assert reply.headers["x-correlation-id"] == "corr-1"


async def test_a_missing_correlation_id_is_created_and_the_same_one_goes_both_ways(hub: Harness) -> None:
    reply = await hub.client.put(SESSION_URL, headers=put_session(), content=SESSION)
    sent = hub.outbound.last
    created = sent.header(b"x-correlation-id")
    assert created is not None and UUID4.fullmatch(created)
    assert reply.headers["x-correlation-id"] == created.decode()
    assert UUID4.fullmatch(reply.headers["x-request-id"].encode())  # one made for the requester too
    assert reply.headers["x-request-id"].encode() != sent.header(b"x-request-id")


async def test_request_ids_differ_for_every_forwarded_request(hub: Harness) -> None:
    for _ in range(5):
        await hub.client.put(SESSION_URL, headers=put_session(**{"X-Request-ID": "same"}), content=SESSION)
    assert len({s.header(b"x-request-id") for s in hub.outbound.sent}) == 5


async def test_other_headers_pass_and_hop_by_hop_ones_stay_behind(hub: Harness) -> None:
    extra = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-Custom": "kept",
        "TE": "trailers",
        "Proxy-Authorization": "Basic c2VjcmV0",
        "Keep-Alive": "timeout=5",
        "Upgrade": "h2c",
        "Expect": "100-continue",
        "Trailer": "x",
    }
    await hub.client.put(SESSION_URL, headers=put_session(**extra), content=SESSION)
    sent = hub.outbound.last
    assert sent.header(b"content-type") == b"application/json"
    assert sent.header(b"accept") == b"application/json"
    assert sent.header(b"x-custom") == b"kept"
    for dropped in (b"te", b"proxy-authorization", b"keep-alive", b"upgrade", b"expect", b"trailer", b"connection"):
        assert dropped not in sent.names, dropped
    # Host and framing are the outbound client's business, the requester's token never leaves the hub.
    assert b"host" not in sent.names
    assert b"content-length" not in sent.names
    assert sent.values(b"authorization") == [b"Token token-b-emsp"]
    assert CPO.token_c.encode() not in b"".join(v for _, v in sent.headers)


async def test_routing_headers_given_are_forwarded_once_and_unchanged(hub: Harness) -> None:
    await hub.client.put(SESSION_URL, headers=put_session(), content=SESSION)
    sent = hub.outbound.last
    assert sent.header(b"ocpi-from-country-code") == b"NL"
    assert sent.header(b"ocpi-from-party-id") == b"CPO"
    assert sent.header(b"ocpi-to-country-code") == b"DE"
    assert sent.header(b"ocpi-to-party-id") == b"EMS"


async def test_a_one_party_sender_without_ocpi_from_gets_it_filled_in(hub: Harness) -> None:
    reply = await hub.client.put(SESSION_URL, headers=headers_of(CPO, to=EMSP_PARTY), content=SESSION)
    assert reply.status_code == 200
    sent = hub.outbound.last
    assert (sent.header(b"ocpi-from-country-code"), sent.header(b"ocpi-from-party-id")) == (b"NL", b"CPO")


async def test_an_open_routed_cdr_gets_ocpi_to_filled_in_from_its_cdr_token(hub: Harness) -> None:
    cdr = b'{"id":"CDR1","cdr_token":{"country_code":"DE","party_id":"EMS","uid":"T1"}}'
    reply = await hub.client.post("/ocpi/2.2.1/receiver/cdrs", headers=headers_of(CPO), content=cdr)
    assert reply.status_code == 200
    sent = hub.outbound.last
    assert sent.url == EMSP.endpoint("cdrs", "RECEIVER")
    assert sent.body == cdr
    assert (sent.header(b"ocpi-to-country-code"), sent.header(b"ocpi-to-party-id")) == (b"DE", b"EMS")
    assert (sent.header(b"ocpi-from-country-code"), sent.header(b"ocpi-from-party-id")) == (b"NL", b"CPO")


async def test_an_open_routed_command_asks_the_owner_index_once() -> None:
    owners = {(OwnerKind.LOCATION, "LOC1"): [CPO_PARTY]}
    async with proxy_harness(owners=owners) as hub:
        command = b'{"location_id":"LOC1","response_url":"http://emsp.example.com:8080/cb/1","token":{}}'
        reply = await hub.client.post(
            "/ocpi/2.2.1/receiver/commands/START_SESSION", headers=headers_of(EMSP), content=command
        )
        assert reply.status_code == 200, reply.text
        assert hub.owners.asked == [(OwnerKind.LOCATION, "LOC1")]
        assert hub.outbound.last.url == CPO.endpoint("commands", "RECEIVER") + "/START_SESSION"
        assert hub.outbound.last.header(b"ocpi-to-party-id") == b"CPO"


async def test_directly_routed_pushes_teach_the_owner_index_without_waiting_for_it(hub: Harness) -> None:
    await hub.client.put(SESSION_URL, headers=put_session(), content=SESSION)
    facts = {(f.kind, f.key, str(f.party)) for f in hub.runtime.learner.pending}
    assert facts == {(OwnerKind.SESSION_CPO, "S1", "NL:CPO"), (OwnerKind.SESSION_EMSP, "S1", "DE:EMS")}


# -- the answer -------------------------------------------------------------------------------------------------


async def test_only_the_answer_headers_ocpi_defines_come_back(hub: Harness) -> None:
    hub.outbound.script = lambda _sent: Answer(
        headers=[
            (b"Content-Type", b"application/json; charset=utf-8"),
            (b"X-Total-Count", b"1"),
            (b"X-Limit", b"10"),
            (b"Set-Cookie", b"session=abc"),
            (b"Server", b"receiver/1.0"),
            (b"WWW-Authenticate", b"Token"),
            (b"X-Powered-By", b"php"),
            (b"Authorization", b"Token leaked"),
            (b"Via", b"1.1 internal-proxy"),
            (b"X-Request-ID", b"receivers-own"),
            (b"X-Correlation-ID", b"receivers-own"),
            (b"X-Internal-Debug", b"1"),
            (b"OCPI-to-country-code", b"NL"),
            (b"OCPI-to-party-id", b"CPO"),
            (b"OCPI-from-country-code", b"DE"),
            (b"OCPI-from-party-id", b"EMS"),
        ]
    )
    reply = await hub.client.get(
        "/ocpi/2.2.1/sender/locations/LOC1",
        headers=headers_of(EMSP, to=CPO_PARTY, sender=EMSP_PARTY, **{"X-Request-ID": "r", "X-Correlation-ID": "c"}),
    )
    names = {k.lower() for k in reply.headers}
    assert names == {
        "content-length",  # the hub's own framing of the answer it read whole
        "content-type",
        "x-total-count",
        "x-limit",
        "ocpi-to-country-code",
        "ocpi-to-party-id",
        "ocpi-from-country-code",
        "ocpi-from-party-id",
        "x-request-id",
        "x-correlation-id",
    }
    assert reply.headers["content-type"] == "application/json; charset=utf-8"
    assert (reply.headers["x-request-id"], reply.headers["x-correlation-id"]) == ("r", "c")
    assert reply.headers.get_list("x-request-id") == ["r"]


async def test_an_answer_without_routing_headers_gets_them_from_the_hub(hub: Harness) -> None:
    reply = await hub.client.put(SESSION_URL, headers=put_session(), content=SESSION)
    # §4.1.8.6: TO = the requester, FROM = the receiver.
    assert (reply.headers["ocpi-to-country-code"], reply.headers["ocpi-to-party-id"]) == ("NL", "CPO")
    assert (reply.headers["ocpi-from-country-code"], reply.headers["ocpi-from-party-id"]) == ("DE", "EMS")


async def test_the_receivers_status_and_body_pass_through_unparsed(hub: Harness) -> None:
    hub.outbound.script = lambda _sent: Answer(
        status=502, headers=[(b"content-type", b"text/html")], body=b"<html>bad gateway</html>"
    )
    reply = await hub.client.put(SESSION_URL, headers=put_session(), content=SESSION)
    assert (reply.status_code, reply.headers["content-type"], reply.content) == (
        502,
        "text/html",
        b"<html>bad gateway</html>",
    )
    assert hub.counted() == {("sessions", "RECEIVER", "server_error"): 1.0}


async def test_a_large_answer_streams_through_whole() -> None:
    body = b'{"data":"' + b"x" * 200 + b'","status_code":1000}'
    async with proxy_harness(lambda _sent: Answer(body=body, chunk=16), max_buffered_answer=64) as hub:
        reply = await hub.client.put(SESSION_URL, headers=put_session(), content=SESSION)
        assert reply.content == body
        bodies = [m for m in hub.server.messages if m["type"] == "http.response.body"]
        assert len(bodies) > 2  # streamed in pieces, not buffered
        assert bodies[-1] == {"type": "http.response.body", "body": b""}


# -- Link: pagination through a relay ------------------------------------------------------------------------------


async def test_a_link_becomes_a_relay_url_keeping_the_query_that_only_the_requester_may_follow(hub: Harness) -> None:
    next_page = CPO.endpoint("locations", "SENDER") + "?date_from=2026-01-01T00:00:00Z&offset=10&limit=10"
    hub.outbound.script = lambda _sent: Answer(
        headers=[
            (b"content-type", b"application/json"),
            (b"link", f'<{next_page}>; rel="next"'.encode()),
            (b"x-total-count", b"25"),
            (b"x-limit", b"10"),
        ]
    )
    reply = await hub.client.get(
        "/ocpi/2.2.1/sender/locations?date_from=2026-01-01T00:00:00Z&limit=10",
        headers=headers_of(EMSP, to=CPO_PARTY, sender=EMSP_PARTY),
    )
    link = reply.headers["link"]
    match = re.fullmatch(r'<(?P<url>[^>]+)>; rel="next"', link)
    assert match is not None, link
    url = match["url"]
    prefix = HUB_URL + RELAY_PREFIX
    assert url.startswith(prefix)
    token_and_path, _, query = url[len(prefix) :].partition("?")
    assert query == "date_from=2026-01-01T00:00:00Z&offset=10&limit=10"  # the receiver's own, readable
    assert len(url) < 255
    table = hub.runtime.holder.table
    grant = verify(table.signing, token_and_path, table.platforms, 1_767_225_600)
    assert grant is not None
    assert grant.target == CPO.endpoint("locations", "SENDER")
    assert (grant.platform_id, grant.allowed_id) == (CPO.id, EMSP.id)

    # The requester follows it with its token alone: the same receiver, the query, the routing headers restored.
    followed = await hub.client.get(url, headers=headers_of(EMSP))
    assert followed.status_code == 200
    sent = hub.outbound.last
    assert sent.url == next_page
    assert (sent.header(b"ocpi-to-country-code"), sent.header(b"ocpi-to-party-id")) == (b"NL", b"CPO")
    assert (sent.header(b"ocpi-from-country-code"), sent.header(b"ocpi-from-party-id")) == (b"DE", b"EMS")
    assert sent.header(b"authorization") == b"Token dG9rZW4tYi1jcG8="
    assert hub.requests("relay", "none", "ok") == 1

    # Anyone else gets the same 404 as for a URL that never existed, and nothing is forwarded.
    forwarded = len(hub.outbound.sent)
    other = await hub.client.get(url, headers=headers_of(MULTI, sender=MULTI.parties[1]))
    assert other.status_code == 404
    assert envelope_of(other)["status_code"] == 2000
    assert len(hub.outbound.sent) == forwarded


async def test_the_pages_of_a_crawl_share_one_signed_part_and_each_keeps_its_own_query(hub: Harness) -> None:
    endpoint = CPO.endpoint("locations", "SENDER")
    offsets = iter(range(10, 100, 10))
    hub.outbound.script = lambda _sent: Answer(
        headers=[(b"link", f'<{endpoint}?offset={next(offsets)}&limit=10>; rel="next"'.encode())]
    )
    headers = headers_of(EMSP, to=CPO_PARTY, sender=EMSP_PARTY)
    links = [(await hub.client.get("/ocpi/2.2.1/sender/locations", headers=headers)).headers["link"] for _ in range(3)]
    signed = {link.partition("?")[0] for link in links}
    assert len(signed) == 1, links  # one relay URL per list and expiry step: only the query differs
    assert [link.partition("?")[2] for link in links] == [f'offset={n}&limit=10>; rel="next"' for n in (10, 20, 30)]
    followed = await hub.client.get(links[2][1:].partition(">")[0], headers=headers_of(EMSP))
    assert followed.status_code == 200
    assert hub.outbound.last.url == endpoint + "?offset=30&limit=10"
    # A query a request line cannot carry is never appended to a relay URL.
    hub.outbound.script = lambda _sent: Answer(headers=[(b"link", f'<{endpoint}?offset=1 0>; rel="next"'.encode())])
    assert "link" not in (await hub.client.get("/ocpi/2.2.1/sender/locations", headers=headers)).headers


async def test_a_link_to_anywhere_but_the_receiver_is_not_passed_on(hub: Harness) -> None:
    hub.outbound.script = lambda _sent: Answer(
        headers=[(b"content-type", b"application/json"), (b"link", b'<https://evil.example/steal>; rel="next"')]
    )
    reply = await hub.client.get("/ocpi/2.2.1/sender/locations", headers=headers_of(EMSP, to=CPO_PARTY))
    assert reply.status_code == 200
    assert "link" not in reply.headers


@pytest.mark.parametrize(
    "rest",
    ["A" * TOKEN_LENGTH + "/ocpi/x", "not-a-token", "A" * (TOKEN_LENGTH - 1) + "/"],
    ids=["forged", "garbage", "short"],
)
async def test_a_forged_relay_url_is_404_after_authentication_and_401_before(hub: Harness, rest: str) -> None:
    refused = await hub.client.get(RELAY_PREFIX + rest, headers=headers_of(EMSP, token="nobody"))
    assert refused.status_code == 401
    unknown = await hub.client.get(RELAY_PREFIX + rest, headers=headers_of(EMSP))
    assert unknown.status_code == 404
    assert envelope_of(unknown)["status_message"] == "unknown or expired relay URL"
    assert hub.outbound.sent == []


# -- response_url: rewritten byte for byte except the URL ------------------------------------------------------------


async def test_a_response_url_is_rewritten_and_every_other_byte_stays() -> None:
    original = "http://emsp.example.com:8080/ocpi/emsp/2.2.1/commands/START_SESSION/1234"
    body = (
        b'{ "response_url" :"' + original.encode() + b'",\n  "token": {"uid":"T1", "type":"RFID"},'
        b'"location_id":"LOC1" ,"evse_uid":"E\\u00e91"}'
    )
    async with proxy_harness() as hub:
        reply = await hub.client.post(
            "/ocpi/2.2.1/receiver/commands/START_SESSION",
            headers=headers_of(EMSP, to=CPO_PARTY),
            content=body,
        )
        assert reply.status_code == 200
        forwarded = hub.outbound.last.body
        assert forwarded is not None
        relayed = orjson.loads(forwarded)["response_url"]
        assert relayed.startswith(HUB_URL + RELAY_PREFIX)
        assert len(relayed) < 255
        assert forwarded.replace(relayed.encode(), original.encode()) == body
        # The CPO calls it back with its own token; it reaches the eMSP's URL with the eMSP's token.
        result = b'{"result":"ACCEPTED"}'
        callback = await hub.client.post(relayed, headers=headers_of(CPO), content=result)
        assert callback.status_code == 200
        sent = hub.outbound.last
        assert (sent.method, sent.url, sent.body) == ("POST", original, result)
        assert sent.header(b"authorization") == b"Token token-b-emsp"
        assert (sent.header(b"ocpi-to-party-id"), sent.header(b"ocpi-from-party-id")) == (b"EMS", b"CPO")


async def test_a_response_url_written_with_escaped_slashes_is_still_rewritten() -> None:
    body = b'{"response_url":"http:\\/\\/emsp.example.com:8080\\/cb\\/1","location_id":"LOC1"}'
    async with proxy_harness() as hub:
        await hub.client.post(
            "/ocpi/2.2.1/receiver/commands/START_SESSION", headers=headers_of(EMSP, to=CPO_PARTY), content=body
        )
        forwarded = hub.outbound.last.body
        assert forwarded is not None
        document = orjson.loads(forwarded)
        assert document["response_url"].startswith(HUB_URL + RELAY_PREFIX)
        assert document["location_id"] == "LOC1"


async def test_a_response_url_on_someone_elses_host_is_2001_and_not_forwarded(hub: Harness) -> None:
    body = b'{"response_url":"https://evil.example/cb","location_id":"LOC1"}'
    reply = await hub.client.post(
        "/ocpi/2.2.1/receiver/commands/START_SESSION", headers=headers_of(EMSP, to=CPO_PARTY), content=body
    )
    assert reply.status_code == 400
    assert envelope_of(reply)["status_code"] == 2001
    assert hub.outbound.sent == []


async def test_a_charging_profile_get_has_its_response_url_query_rewritten(hub: Harness) -> None:
    original = "http://emsp.example.com:8080/cp/result/1"
    await hub.client.get(
        "/ocpi/2.2.1/receiver/chargingprofiles/S1",
        params={"duration": "900", "response_url": original},
        headers=headers_of(EMSP, to=CPO_PARTY),
    )
    url = hub.outbound.last.url
    assert url.startswith(CPO.endpoint("chargingprofiles", "RECEIVER") + "/S1?duration=900&response_url=")
    assert "emsp.example.com" not in url
    assert "hub.example.com%2Focpi%2F2.2.1%2Frelay%2F" in url


# -- refusals: envelopes, HTTP statuses, outcome labels, nothing forwarded ---------------------------------------------


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing Authorization header"),
        ({"Authorization": "Token " + "bm9ib2R5"}, "unknown credentials token"),
        ({"Authorization": "Bearer abc"}, "Authorization must be 'Token <credentials token>'"),
    ],
    ids=["missing", "unknown", "not a token"],
)
async def test_an_unauthenticated_request_is_401_with_an_envelope(
    hub: Harness, headers: dict[str, str], reason: str
) -> None:
    reply = await hub.client.put(
        SESSION_URL, headers=headers | {"OCPI-to-country-code": "??", "X-Request-ID": "r1"}, content=SESSION
    )
    assert reply.status_code == 401
    assert envelope_of(reply)["status_code"] == 2000
    assert envelope_of(reply)["status_message"] == reason
    assert reply.headers["x-request-id"] == "r1"
    assert "ocpi-to-party-id" not in reply.headers  # nobody known to answer to
    assert hub.outbound.sent == []
    assert hub.counted() == {("sessions", "RECEIVER", "refused"): 1.0}


async def test_a_token_a_is_401_on_a_module(hub: Harness) -> None:
    reply = await hub.client.put(SESSION_URL, headers=headers_of(PLANNED, to=EMSP_PARTY), content=SESSION)
    assert reply.status_code == 401
    assert hub.outbound.sent == []


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (headers_of(CPO, to=EMSP_PARTY, sender=EMSP_PARTY), "does not belong"),
        (headers_of(MULTI, to=EMSP_PARTY), "several parties"),
        ({**headers_of(CPO, to=EMSP_PARTY), "OCPI-from-country-code": "NL"}, "come in pairs"),
        ({**headers_of(CPO, sender=CPO_PARTY), "OCPI-to-country-code": "D", "OCPI-to-party-id": "EMS"}, "CiString"),
    ],
    ids=["impersonated", "several parties, no OCPI-from", "half a pair", "malformed OCPI-to"],
)
async def test_a_refused_sender_or_malformed_routing_is_2001_with_http_400(
    hub: Harness, headers: dict[str, str], message: str
) -> None:
    reply = await hub.client.put(SESSION_URL, headers=headers, content=SESSION)
    assert reply.status_code == 400
    envelope = envelope_of(reply)
    assert envelope["status_code"] == 2001
    assert message in envelope["status_message"]
    assert set(envelope) == {"status_code", "status_message", "timestamp"}
    assert hub.outbound.sent == []
    assert hub.counted() == {("sessions", "RECEIVER", "client_error"): 1.0}


async def test_a_hub_made_answer_names_the_requester_and_the_hub(hub: Harness) -> None:
    reply = await hub.client.put(SESSION_URL, headers=headers_of(CPO, to=PartyKey("XX", "ZZZ")), content=SESSION)
    # digest §8.19: TO = the requester, FROM = the hub.
    assert (reply.headers["ocpi-to-country-code"], reply.headers["ocpi-to-party-id"]) == ("NL", "CPO")
    assert (reply.headers["ocpi-from-country-code"], reply.headers["ocpi-from-party-id"]) == (
        HUB.country_code,
        HUB.party_id,
    )


@pytest.mark.parametrize(
    ("to", "status", "outcome"),
    [
        (PartyKey("XX", "ZZZ"), 4001, "unknown_receiver"),
        (PartyKey("NL", "SUS"), 4003, "receiver_suspended"),
        (PartyKey("NL", "OFF"), 4003, "receiver_offline"),
        (PartyKey("NL", "PLA"), 4003, "receiver_planned"),
        (PartyKey("NL", "NOC"), 4003, "no_endpoint"),
    ],
)
async def test_a_receiver_the_hub_cannot_forward_to_is_answered_without_contacting_it(
    hub: Harness, to: PartyKey, status: int, outcome: str
) -> None:
    reply = await hub.client.put(SESSION_URL, headers=headers_of(CPO, to=to), content=SESSION)
    assert reply.status_code == 200  # the request reached the OCPI layer (status_codes §5)
    assert envelope_of(reply)["status_code"] == status
    assert hub.outbound.sent == []
    assert hub.counted() == {("sessions", "RECEIVER", outcome): 1.0}


@pytest.mark.parametrize(
    ("failure", "status", "outcome"),
    [
        (ForwardTimeoutError("the receiver did not answer within 5 s"), 4002, "timeout"),
        (ReceiverUnreachableError("the receiver closed the connection"), 4003, "unreachable"),
        (OverloadedError("too many requests pending"), 4003, "overloaded"),
    ],
)
async def test_a_receiver_failing_before_its_answer_is_4002_or_4003_by_cause(
    hub: Harness, failure: Exception, status: int, outcome: str
) -> None:
    assert isinstance(failure, ForwardTimeoutError | ReceiverUnreachableError)
    hub.outbound.script = lambda _sent: Answer(fail=failure)
    reply = await hub.client.put(SESSION_URL, headers=put_session(), content=SESSION)
    assert reply.status_code == 200
    assert envelope_of(reply)["status_code"] == status
    assert len(hub.outbound.sent) == 1
    assert hub.counted() == {("sessions", "RECEIVER", outcome): 1.0}


async def test_a_receiver_failing_mid_answer_before_the_head_went_out_is_an_honest_4003(hub: Harness) -> None:
    hub.outbound.script = lambda _sent: Answer(fail_mid_body=ReceiverUnreachableError("broke off"))
    reply = await hub.client.put(SESSION_URL, headers=put_session(), content=SESSION)
    assert reply.status_code == 200
    assert envelope_of(reply)["status_code"] == 4003
    assert hub.counted() == {("sessions", "RECEIVER", "unreachable"): 1.0}


async def test_a_receiver_failing_while_streaming_cuts_the_connection_never_a_complete_looking_answer() -> None:
    def breaking_off(_sent: Sent) -> Answer:
        return Answer(body=b"x" * 100, chunk=10, fail_mid_body=ReceiverUnreachableError("broke off"))

    async with proxy_harness(breaking_off, max_buffered_answer=16) as hub:
        with pytest.raises(ConnectionCutError):
            await hub.client.put(SESSION_URL, headers=put_session(), content=SESSION)
        assert hub.server.aborts == 1
        started = [m for m in hub.server.messages if m["type"] == "http.response.start"]
        bodies = [m for m in hub.server.messages if m["type"] == "http.response.body"]
        assert [m["status"] for m in started] == [200]
        assert all(m.get("more_body") for m in bodies)  # the last piece never went out
        assert hub.counted() == {("sessions", "RECEIVER", "unreachable"): 1.0}


async def test_a_body_over_the_limit_is_413_and_not_forwarded() -> None:
    async with proxy_harness(max_body_size=32) as hub:
        reply = await hub.client.put(SESSION_URL, headers=put_session(), content=b"{" + b" " * 40 + b"}")
        assert reply.status_code == 413
        assert envelope_of(reply)["status_code"] == 2001
        assert hub.outbound.sent == []


# -- rate limits -----------------------------------------------------------------------------------------------------


async def test_a_platform_over_its_rate_limit_gets_429_with_retry_after(hub: Harness) -> None:
    headers = headers_of(LIMITED, to=CPO_PARTY)
    first = await hub.client.get("/ocpi/2.2.1/sender/locations", headers=headers)
    assert first.status_code == 200
    second = await hub.client.get("/ocpi/2.2.1/sender/locations", headers=headers)
    assert second.status_code == 429
    assert second.headers["retry-after"] == "2"  # 0.5 requests per second: a token is back in 2 s
    assert envelope_of(second)["status_code"] == 2000
    assert len(hub.outbound.sent) == 1
    assert hub.requests("locations", "SENDER", "rate_limited") == 1
    # Other platforms are not held back by it.
    assert (await hub.client.get("/ocpi/2.2.1/sender/locations", headers=headers_of(EMSP, to=CPO_PARTY))).is_success


async def test_the_rate_limit_is_checked_after_authentication(hub: Harness) -> None:
    for _ in range(3):
        refused = await hub.client.get(
            "/ocpi/2.2.1/sender/locations", headers=headers_of(LIMITED, token="nobody", to=CPO_PARTY)
        )
        assert refused.status_code == 401
    assert (await hub.client.get("/ocpi/2.2.1/sender/locations", headers=headers_of(LIMITED, to=CPO_PARTY))).is_success


# -- accounting -----------------------------------------------------------------------------------------------------


async def test_every_request_is_a_sign_of_life_of_its_platform(hub: Harness) -> None:
    await hub.client.put(SESSION_URL, headers=put_session(), content=SESSION)
    await hub.client.put(SESSION_URL, headers=headers_of(EMSP, to=PartyKey("XX", "ZZZ")), content=SESSION)
    assert set(hub.runtime.seen) == {CPO.id, EMSP.id}
