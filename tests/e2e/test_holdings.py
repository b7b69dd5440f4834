"""What the hub keeps and answers itself (issue: GET All via Hub and Open Routing), through the real hub over real
HTTP and a real Redis: broadcast objects stored and crawled with GET All (transport_and_format §4.1.8.5,
§4.1.8.7), and requests without OCPI-to-* routed to the party that owns what they address (§4.1.8.4, §4.1.8.6)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from registry.store import PartyStore
from tests.support.fake_party import FakeParty, ocpi, token_header, wait_until
from tests.support.hubs import HubFactory, RunningHub, connected

pytestmark = pytest.mark.e2e

HUB = ("ZZ", "HUB")


@dataclass
class Market:
    hub: RunningHub
    store: PartyStore
    cp1: FakeParty
    cp2: FakeParty
    em1: FakeParty
    em2: FakeParty
    client: httpx.AsyncClient

    def everyone(self) -> list[FakeParty]:
        return [self.cp1, self.cp2, self.em1, self.em2]

    async def push(self, sender: FakeParty, method: str, path: str, body: Any, to: tuple[str, str] | None = HUB) -> Any:
        headers = sender.headers_to(to or HUB)
        if to is None:
            del headers["OCPI-to-country-code"], headers["OCPI-to-party-id"]
        reply = await self.client.request(method, self.hub.url(path), headers=headers, content=orjson.dumps(body))
        assert reply.status_code == 200, reply.text
        return reply.json()

    async def get(self, sender: FakeParty, url: str, to: tuple[str, str] | None = HUB) -> httpx.Response:
        headers = sender.headers_to(to or HUB)
        if to is None:
            del headers["OCPI-to-country-code"], headers["OCPI-to-party-id"]
        return await self.client.get(url if url.startswith("http") else self.hub.url(url), headers=headers)


@pytest.fixture
async def market(hub: RunningHub, store: PartyStore, client: httpx.AsyncClient) -> AsyncIterator[Market]:
    specs = (
        FakeParty([("NL", "CP1", "CPO")], name="cp1"),
        FakeParty([("NL", "CP2", "CPO")], name="cp2"),
        FakeParty([("BE", "EM1", "EMSP")], name="em1"),
        FakeParty([("DE", "EM2", "EMSP")], name="em2"),
    )
    async with connected(store, hub, *specs) as running:
        cp1, cp2, em1, em2 = running
        yield Market(hub, store, cp1, cp2, em1, em2, client)


def location(cpo: str, loc: str, updated: str, evses: int = 2) -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": cpo,
        "id": loc,
        "name": f"{loc} of {cpo}",
        "evses": [
            {
                "uid": f"{loc}-E{e}",
                "status": "AVAILABLE",
                "connectors": [{"id": "1", "standard": "IEC_62196_T2", "last_updated": updated}],
                "last_updated": updated,
            }
            for e in range(evses)
        ],
        "last_updated": updated,
    }


def token(emsp: tuple[str, str], uid: str, updated: str = "2026-03-01T00:00:00Z") -> dict[str, Any]:
    return {"country_code": emsp[0], "party_id": emsp[1], "uid": uid, "type": "RFID", "valid": True,
            "last_updated": updated}  # fmt: skip


async def drain(m: Market) -> None:
    """Wait until every accepted broadcast has been applied and fanned out (a positive signal, not a sleep)."""
    runtime = m.hub.app.runtime
    assert runtime is not None
    await wait_until(lambda: not runtime.tasks.running("broadcast:"), 5.0, "the fan-outs")


async def crawl(m: Market, who: FakeParty, first: str) -> tuple[list[dict[str, Any]], list[httpx.Response]]:
    """Follow the hub's Links from ``first`` to the end."""
    objects: list[dict[str, Any]] = []
    pages: list[httpx.Response] = []
    url: str | None = first
    while url is not None:
        reply = await m.get(who, url)
        assert reply.status_code == 200, reply.text
        pages.append(reply)
        objects += reply.json()["data"]
        link = reply.headers.get("link")
        url = link[1 : link.index(">")] if link else None
        assert len(pages) < 50
    return objects, pages


# -- the store and GET All via Hub ------------------------------------------------------------------------------


async def test_broadcast_locations_are_crawled_with_get_all(market: Market) -> None:
    m = market
    await m.push(
        m.cp1, "PUT", "/ocpi/2.2.1/receiver/locations/NL/CP1/L1", location("CP1", "L1", "2026-02-01T00:00:00Z")
    )
    await m.push(
        m.cp2, "PUT", "/ocpi/2.2.1/receiver/locations/NL/CP2/L2", location("CP2", "L2", "2026-02-02T00:00:00Z")
    )
    await m.push(
        m.cp1, "PUT", "/ocpi/2.2.1/receiver/locations/NL/CP1/L3", location("CP1", "L3", "2025-01-01T00:00:00Z")
    )
    # EVSE and Connector PATCHes: merged at their level; their last_updated goes up to the parents.
    await m.push(
        m.cp1,
        "PATCH",
        "/ocpi/2.2.1/receiver/locations/NL/CP1/L1/L1-E0",
        {"status": "CHARGING", "last_updated": "2026-02-05T00:00:00Z"},
    )
    await m.push(
        m.cp1,
        "PATCH",
        "/ocpi/2.2.1/receiver/locations/NL/CP1/L1/L1-E1/1",
        {"max_voltage": 400, "last_updated": "2026-02-06T00:00:00Z"},
    )
    await drain(m)

    # A new eMSP crawls every CPO's locations in one go, with date_from, a page at a time.
    objects, pages = await crawl(m, m.em2, "/ocpi/2.2.1/sender/locations/?limit=1&date_from=2026-01-01T00:00:00Z")
    # Every CPO's, except L3 (older than date_from); in the order the hub first stored them.
    assert sorted(o["id"] for o in objects) == ["L1", "L2"]
    assert all(p.headers["x-total-count"] == "2" for p in pages)
    assert all(p.headers["x-limit"] == "1" for p in pages)
    link = pages[0].headers["link"]
    assert "date_from=2026-01-01T00%3A00%3A00Z" in link and "limit=1" in link and "offset=1" in link
    # FROM = hub, TO = the requester (§4.1.8.7 table).
    assert (pages[0].headers["ocpi-from-country-code"], pages[0].headers["ocpi-from-party-id"]) == HUB
    assert (pages[0].headers["ocpi-to-country-code"], pages[0].headers["ocpi-to-party-id"]) == ("DE", "EM2")
    l1 = next(o for o in objects if o["id"] == "L1")
    assert l1["evses"][0]["status"] == "CHARGING"
    assert l1["evses"][1]["connectors"][0]["max_voltage"] == 400
    assert l1["evses"][1]["last_updated"] == "2026-02-06T00:00:00Z"
    assert l1["last_updated"] == "2026-02-06T00:00:00Z"  # the sender's value, never the hub's clock
    # No party was asked: the hub answered from its store.
    assert not any(r.method == "GET" for p in m.everyone() for r in p.received)


async def test_a_whole_put_is_kept_byte_for_byte(market: Market) -> None:
    m = market
    raw = (
        b'{"country_code":"NL" , "party_id":"CP1","id":"T1","currency":"EUR","price":1.50,'
        b'"last_updated":"2026-01-01T00:00:00Z"}'
    )
    headers = m.cp1.headers_to(HUB)
    reply = await m.client.put(m.hub.url("/ocpi/2.2.1/receiver/tariffs/NL/CP1/T1"), headers=headers, content=raw)
    assert reply.json()["status_code"] == 1000
    await drain(m)
    page = await m.get(m.em1, "/ocpi/2.2.1/sender/tariffs")
    assert raw in page.content  # served verbatim inside the envelope
    one = await m.get(m.em1, "/ocpi/2.2.1/sender/tariffs/NL/CP1/T1")
    assert one.content.startswith(b'{"data":' + raw + b",")
    # A tariff DELETE is carried to the store (and to the receivers) too.
    headers = m.cp1.headers_to(HUB)
    deleted = await m.client.delete(m.hub.url("/ocpi/2.2.1/receiver/tariffs/NL/CP1/T1"), headers=headers)
    assert deleted.json()["status_code"] == 1000, deleted.text
    await drain(m)
    assert any(r.method == "DELETE" and r.path.endswith("/NL/CP1/T1") for r in m.em1.received)
    gone = await m.get(m.em1, "/ocpi/2.2.1/sender/tariffs/NL/CP1/T1")
    assert gone.status_code == 404
    assert gone.json()["status_code"] == 2000
    missing = await m.get(m.em1, "/ocpi/2.2.1/sender/locations/NL/CP1/NOPE")
    assert (missing.status_code, missing.json()["status_code"]) == (404, 2003)


async def test_get_all_is_for_the_roles_that_receive_the_module(market: Market) -> None:
    m = market
    refused = await m.get(m.cp2, "/ocpi/2.2.1/sender/locations")
    assert (refused.status_code, refused.json()["status_code"]) == (400, 2001)
    refused = await m.get(m.em1, "/ocpi/2.2.1/sender/tokens")
    assert refused.json()["status_code"] == 2001
    refused = await m.get(m.em1, "/ocpi/2.2.1/sender/sessions")  # never stored nor served this way
    assert refused.json()["status_code"] == 2001
    allowed = await m.get(m.cp1, "/ocpi/2.2.1/sender/tokens")
    assert allowed.json() | {"timestamp": ""} == {"data": [], "status_code": 1000, "timestamp": ""}


async def test_a_crawl_during_updates_skips_and_repeats_no_unchanged_object(market: Market) -> None:
    m = market
    for n in range(6):
        body = location("CP1", f"S{n}", f"2026-04-0{n + 1}T00:00:00Z", evses=1)
        await m.push(m.cp1, "PUT", f"/ocpi/2.2.1/receiver/locations/NL/CP1/S{n}", body)
    await drain(m)
    first = await m.get(m.em1, "/ocpi/2.2.1/sender/locations?limit=2")
    seen = [o["id"] for o in first.json()["data"]]
    # Meanwhile: an object already served is updated (it would move to the end if ordered by last_updated).
    await m.push(
        m.cp1, "PUT", "/ocpi/2.2.1/receiver/locations/NL/CP1/S0", location("CP1", "S0", "2026-05-01T00:00:00Z")
    )
    await drain(m)
    link = first.headers["link"]
    rest, _ = await crawl(m, m.em1, link[1 : link.index(">")])
    seen += [o["id"] for o in rest]
    assert seen == ["S0", "S1", "S2", "S3", "S4", "S5"]


async def test_out_of_order_pushes_on_two_hubs_end_in_the_newest(market: Market, hub_factory: HubFactory) -> None:
    m = market
    async with hub_factory() as second:
        await second.synced(m.store)
        newer = location("CP1", "R1", "2026-06-02T00:00:00Z")
        older = location("CP1", "R1", "2026-06-01T00:00:00Z")
        newer["name"], older["name"] = "newer", "older"
        path = "/ocpi/2.2.1/receiver/locations/NL/CP1/R1"
        headers = m.cp1.headers_to(HUB)
        # The newer push reaches one hub first, the older one reaches the other hub afterwards.
        await m.client.put(second.url(path), headers=headers, content=orjson.dumps(newer))
        runtime = second.app.runtime
        assert runtime is not None
        await wait_until(lambda: not runtime.tasks.running("broadcast:"), 5.0, "the second hub's fan-out")
        await m.client.put(m.hub.url(path), headers=headers, content=orjson.dumps(older))
        await drain(m)
        for hub in (m.hub, second):
            got = await m.get(m.em1, hub.url("/ocpi/2.2.1/sender/locations/NL/CP1/R1"))
            assert got.json()["data"]["name"] == "newer"


async def test_invalid_broadcast_is_fanned_out_but_not_stored(market: Market) -> None:
    m = market
    runtime = m.hub.app.runtime
    assert runtime is not None
    counter = runtime.metrics.store_pushes[("locations", "invalid")]
    before = counter._value.get()
    body = {"country_code": "NL", "party_id": "CP1", "id": "BAD"}  # no last_updated
    await m.push(m.cp1, "PUT", "/ocpi/2.2.1/receiver/locations/NL/CP1/BAD", body)
    await drain(m)
    assert counter._value.get() == before + 1
    assert any(r.path.endswith("/NL/CP1/BAD") for r in m.em1.received)  # still fanned out as today
    assert (await m.get(m.em1, "/ocpi/2.2.1/sender/locations/NL/CP1/BAD")).status_code == 404


async def test_a_push_without_ocpi_to_from_the_owner_is_a_broadcast(market: Market) -> None:
    m = market
    await m.push(
        m.cp2, "PUT", "/ocpi/2.2.1/receiver/locations/NL/CP2/B1", location("CP2", "B1", "2026-01-01T00:00:00Z"), to=None
    )
    await drain(m)
    assert all(any(r.path.endswith("/NL/CP2/B1") for r in p.received) for p in (m.em1, m.em2))
    assert not m.cp1.received


# -- open routing -------------------------------------------------------------------------------------------------


async def test_authorize_without_ocpi_to_reaches_the_token_owner_only(market: Market) -> None:
    m = market
    await m.push(m.em1, "PUT", "/ocpi/2.2.1/receiver/tokens/BE/EM1/TOK-A", token(("BE", "EM1"), "TOK-A"))
    await m.push(m.em2, "PUT", "/ocpi/2.2.1/receiver/tokens/DE/EM2/TOK-B", token(("DE", "EM2"), "TOK-B"))
    await drain(m)
    for party in m.everyone():
        party.received.clear()
    headers = m.cp1.headers_to(HUB)
    del headers["OCPI-to-country-code"], headers["OCPI-to-party-id"]
    reply = await m.client.post(
        m.hub.url("/ocpi/2.2.1/sender/tokens/TOK-B/authorize?type=RFID"), headers=headers, content=b"{}"
    )
    assert reply.status_code == 200
    assert [p.name for p in m.everyone() if any(r.method == "POST" for r in p.received)] == ["em2"]
    got = next(r for r in m.em2.received if r.method == "POST")
    assert got.path == "/ocpi/2.2.1/tokens/sender/TOK-B/authorize"
    assert (got.headers["ocpi-to-country-code"], got.headers["ocpi-to-party-id"]) == ("DE", "EM2")  # added by the hub
    assert (got.headers["ocpi-from-country-code"], got.headers["ocpi-from-party-id"]) == ("NL", "CP1")  # unchanged


async def test_start_session_without_ocpi_to_and_its_result_back(market: Market) -> None:
    m = market
    await m.push(
        m.cp2, "PUT", "/ocpi/2.2.1/receiver/locations/NL/CP2/LOC9", location("CP2", "LOC9", "2026-01-01T00:00:00Z")
    )
    await drain(m)
    for party in m.everyone():
        party.received.clear()
    result_url = m.em1.base_url + "/ocpi/2.2.1/commands/sender/START_SESSION/77"
    command = {"response_url": result_url, "token": token(("BE", "EM1"), "TOK-A"), "location_id": "LOC9"}
    headers = m.em1.headers_to(HUB)
    del headers["OCPI-to-country-code"], headers["OCPI-to-party-id"]
    reply = await m.client.post(
        m.hub.url("/ocpi/2.2.1/receiver/commands/START_SESSION"), headers=headers, content=orjson.dumps(command)
    )
    assert reply.json()["status_code"] == 1000
    got = next(r for r in m.cp2.received if r.method == "POST")
    assert not any(r.method == "POST" for r in m.cp1.received)
    relayed = got.json["response_url"]
    assert relayed.startswith(m.hub.base_url + "/ocpi/2.2.1/relay/")
    # The CPO posts the result to the URL it got, with its own token only.
    result = await m.client.post(
        relayed, headers={"Authorization": token_header(m.cp2.hub_token)}, json={"result": "ACCEPTED"}
    )
    assert result.status_code == 200
    callback = m.em1.received[-1]
    assert callback.path == "/ocpi/2.2.1/commands/sender/START_SESSION/77"
    assert callback.json == {"result": "ACCEPTED"}


async def test_sessions_cdrs_and_charging_profiles_without_ocpi_to(market: Market) -> None:
    m = market
    session = {
        "country_code": "NL",
        "party_id": "CP1",
        "id": "SES1",
        "cdr_token": {"country_code": "DE", "party_id": "EM2", "uid": "TOK-B", "type": "RFID", "contract_id": "C"},
        "last_updated": "2026-01-01T00:00:00Z",
    }
    await m.push(m.cp1, "PUT", "/ocpi/2.2.1/receiver/sessions/NL/CP1/SES1", session, to=None)
    assert [r.path for r in m.em2.received] == ["/ocpi/2.2.1/sessions/receiver/NL/CP1/SES1"]
    # The PATCH has no cdr_token: it goes to the eMSP that got the session's PUT (learned in the background).
    runtime = m.hub.app.runtime
    assert runtime is not None
    await wait_until(lambda: not runtime.learner.pending, 5.0, "the owner index write")
    await m.push(
        m.cp1,
        "PATCH",
        "/ocpi/2.2.1/receiver/sessions/NL/CP1/SES1",
        {"kwh": 3, "last_updated": "2026-01-01T00:10:00Z"},
        to=None,
    )
    assert [r.method for r in m.em2.received] == ["PUT", "PATCH"]
    cdr = {"id": "CDR1", "cdr_token": session["cdr_token"], "last_updated": "2026-01-01T01:00:00Z"}
    await m.push(m.cp1, "POST", "/ocpi/2.2.1/receiver/cdrs", cdr, to=None)
    assert m.em2.received[-1].path == "/ocpi/2.2.1/cdrs/receiver"
    # A charging profile for the session goes to the session's CPO.
    headers = m.em2.headers_to(HUB)
    del headers["OCPI-to-country-code"], headers["OCPI-to-party-id"]
    profile = {"charging_profile": {"charging_rate_unit": "W"}, "response_url": m.em2.base_url + "/cp/result/1"}
    await m.client.put(
        m.hub.url("/ocpi/2.2.1/receiver/chargingprofiles/SES1"), headers=headers, content=orjson.dumps(profile)
    )
    assert m.cp1.received[-1].path == "/ocpi/2.2.1/chargingprofiles/receiver/SES1"
    assert not m.cp2.received and not m.em1.received


async def test_unknown_or_ambiguous_destination_is_4001_and_nobody_is_contacted(market: Market) -> None:
    m = market
    # Two CPOs broadcast a location with the same id: location ids are unique per CPO only.
    await m.push(
        m.cp1, "PUT", "/ocpi/2.2.1/receiver/locations/NL/CP1/DUP", location("CP1", "DUP", "2026-01-01T00:00:00Z")
    )
    await m.push(
        m.cp2, "PUT", "/ocpi/2.2.1/receiver/locations/NL/CP2/DUP", location("CP2", "DUP", "2026-01-01T00:00:00Z")
    )
    await drain(m)
    for party in m.everyone():
        party.received.clear()
    for path, body in (
        (
            "/ocpi/2.2.1/receiver/commands/START_SESSION",
            {"location_id": "NOWHERE", "response_url": m.em1.base_url + "/r"},
        ),
        ("/ocpi/2.2.1/receiver/commands/START_SESSION", {"location_id": "DUP", "response_url": m.em1.base_url + "/r"}),
    ):
        headers = m.em1.headers_to(HUB)
        del headers["OCPI-to-country-code"], headers["OCPI-to-party-id"]
        reply = await m.client.post(m.hub.url(path), headers=headers, content=orjson.dumps(body))
        assert reply.json()["status_code"] == 4001, reply.text
    assert "ambiguous" in reply.json()["status_message"]
    listing = await m.get(m.em1, "/ocpi/2.2.1/sender/cdrs", to=None)  # a list GET cannot be open-routed
    assert listing.json()["status_code"] == 4001
    await asyncio.sleep(0)
    assert not any(p.received for p in m.everyone())


async def test_missing_from_is_inferred_for_a_one_party_platform(market: Market) -> None:
    m = market
    headers = m.em1.headers_to(("NL", "CP1"))
    del headers["OCPI-from-country-code"], headers["OCPI-from-party-id"]
    reply = await m.client.get(m.hub.url("/ocpi/2.2.1/sender/locations"), headers=headers)
    assert reply.status_code == 200
    got = m.cp1.received[-1]
    # The receiver sees who it is from, and the requester sees TO/FROM on the answer (§4.1.8.6).
    assert (got.headers["ocpi-from-country-code"], got.headers["ocpi-from-party-id"]) == ("BE", "EM1")
    assert (reply.headers["ocpi-to-country-code"], reply.headers["ocpi-to-party-id"]) == ("BE", "EM1")
    assert (reply.headers["ocpi-from-country-code"], reply.headers["ocpi-from-party-id"]) == ("NL", "CP1")


async def test_answers_without_routing_headers_get_them(market: Market) -> None:
    m = market
    m.cp1.responder = lambda _r: ocpi([])  # answers with no routing headers at all
    reply = await m.get(m.em1, "/ocpi/2.2.1/sender/locations", to=("NL", "CP1"))
    assert (reply.headers["ocpi-to-country-code"], reply.headers["ocpi-to-party-id"]) == ("BE", "EM1")
    assert (reply.headers["ocpi-from-country-code"], reply.headers["ocpi-from-party-id"]) == ("NL", "CP1")


async def test_removing_a_platform_drops_what_the_hub_keeps_of_it(market: Market, redis_url: str) -> None:
    from routing.owners import OwnerKind
    from tests.support.processes import hub_env, run_ocpi_hub

    m = market
    await m.push(
        m.cp1, "PUT", "/ocpi/2.2.1/receiver/locations/NL/CP1/GONE", location("CP1", "GONE", "2026-01-01T00:00:00Z")
    )
    await m.push(
        m.cp2, "PUT", "/ocpi/2.2.1/receiver/locations/NL/CP2/KEPT", location("CP2", "KEPT", "2026-01-01T00:00:00Z")
    )
    await drain(m)
    runtime = m.hub.app.runtime
    assert runtime is not None
    assert await runtime.holdings.owners.owners(OwnerKind.LOCATION, "GONE")
    removed = await run_ocpi_hub(
        "registry", "remove", "NL:CP1", "--yes", "--redis-url", redis_url, env=hub_env(key_prefix=m.store.keys.prefix)
    )
    assert removed.returncode == 0, str(removed)
    page = await m.get(m.em1, "/ocpi/2.2.1/sender/locations")
    assert [o["id"] for o in page.json()["data"]] == ["KEPT"]
    assert not await runtime.holdings.owners.owners(OwnerKind.LOCATION, "GONE")
