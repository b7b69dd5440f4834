"""Broadcast push through the real hub (transport_and_format §4.1.8.3): who gets a copy, with which headers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from starlette.responses import Response

from registry.store import PartyStore
from tests.support.fake_party import FakeParty, Received, ocpi, wait_until
from tests.support.hubs import HubFactory, RunningHub, connect_party, connected, parties

pytestmark = pytest.mark.e2e

HUB = ("ZZ", "HUB")
LOCATION = b'{"country_code":"NL", "party_id":"CP1","id":"LOC1" ,"last_updated":"2026-01-01T00:00:00Z"}'


@dataclass
class Market:
    hub: RunningHub
    cp1: FakeParty
    cp2: FakeParty
    em1: FakeParty
    em2: FakeParty
    nsp: FakeParty
    other: FakeParty
    nap: FakeParty
    client: httpx.AsyncClient


@pytest.fixture
async def market(hub: RunningHub, store: PartyStore, client: httpx.AsyncClient) -> AsyncIterator[Market]:
    specs = (
        FakeParty([("NL", "CP1", "CPO")], name="cp1"),
        FakeParty([("NL", "CP2", "CPO")], name="cp2"),
        FakeParty([("BE", "EM1", "EMSP")], name="em1"),
        FakeParty([("DE", "EM2", "EMSP")], name="em2"),
        FakeParty([("FR", "NSP", "NSP")], name="nsp"),
        FakeParty([("IT", "OTH", "OTHER")], name="other"),
        FakeParty([("ES", "NAP", "NAP")], name="nap"),
    )
    async with connected(store, hub, *specs) as running:
        cp1, cp2, em1, em2, nsp, other, nap = running
        yield Market(hub, cp1, cp2, em1, em2, nsp, other, nap, client)


def everyone(m: Market) -> list[FakeParty]:
    return [m.cp1, m.cp2, m.em1, m.em2, m.nsp, m.other, m.nap]


def counted(hub: RunningHub, name: str, **labels: str) -> float:
    """The sum of a counter's samples whose labels include ``labels`` (0 when none was counted)."""
    return sum(
        sample.value
        for family in hub.metrics.collect()
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def fan_outs_finished(hub: RunningHub, module: str, copies: int) -> None:
    """Wait (bounded) until ``copies`` broadcast copies of ``module`` have had their outcome and no fan-out is left
    running: from then on nobody gets another copy of what was pushed, so an absence can be asserted."""
    runtime = hub.app.runtime
    assert runtime is not None

    def finished() -> bool:
        delivered = counted(hub, "ocpihub_broadcast_deliveries_total", module=module)
        return delivered >= copies and not runtime.tasks.running("broadcast:")

    await wait_until(finished, 5, f"{copies} {module} copies delivered and every fan-out finished")
    assert counted(hub, "ocpihub_broadcast_deliveries_total", module=module) == copies


async def refusal_counted(hub: RunningHub, before: float) -> None:
    """Wait (bounded) until the hub has accounted one more refused request (its metrics move after the answer):
    a refused push was decided and answered, and nothing was accepted for a fan-out."""
    await wait_until(
        lambda: counted(hub, "ocpihub_requests_total", outcome="client_error") > before, 5, "the refusal counted"
    )
    assert counted(hub, "ocpihub_broadcasts_total") == 0
    runtime = hub.app.runtime
    assert runtime is not None
    assert not runtime.tasks.running("broadcast:")


async def test_cpo_broadcast_reaches_emsps_nsps_and_others_only(market: Market) -> None:
    m = market
    headers = m.cp1.headers_to(HUB) | {"X-Correlation-ID": "corr-b", "X-Request-ID": "req-b"}
    reply = await m.client.put(
        m.hub.url("/ocpi/2.2.1/receiver/locations/NL/CP1/LOC1"), headers=headers, content=LOCATION
    )
    assert reply.status_code == 200
    assert reply.json()["status_code"] == 1000
    # The hub answers the sender itself: FROM = hub, TO = sender (§4.1.8.6 table).
    assert (reply.headers["ocpi-from-country-code"], reply.headers["ocpi-from-party-id"]) == HUB
    assert (reply.headers["ocpi-to-country-code"], reply.headers["ocpi-to-party-id"]) == ("NL", "CP1")
    assert reply.headers["x-request-id"] == "req-b"

    recipients = [m.em1, m.em2, m.nsp, m.other]
    await wait_until(lambda: all(p.received for p in recipients), 5, "every copy")
    request_ids = set()
    for party in recipients:
        assert len(party.received) == 1
        got = party.received[0]
        assert got.method == "PUT"
        assert got.path == "/ocpi/2.2.1/locations/receiver/NL/CP1/LOC1"  # owner's cc/pid kept (§4.1.8.3 NOTE)
        assert got.body == LOCATION
        assert (got.headers["ocpi-from-country-code"], got.headers["ocpi-from-party-id"]) == HUB
        assert (got.headers["ocpi-to-country-code"], got.headers["ocpi-to-party-id"]) == party.party()
        assert got.headers["x-correlation-id"] == "corr-b"
        assert got.headers["x-request-id"] != "req-b"
        request_ids.add(got.headers["x-request-id"])
    assert len(request_ids) == 4
    # Not to CPOs, not back to the sender, not to a NAP (no opposite role defined for it): asserted once the
    # fan-out has finished with exactly the 4 copies above.
    await fan_outs_finished(m.hub, "locations", 4)
    assert not m.cp1.received
    assert not m.cp2.received
    assert not m.nap.received


async def test_emsp_and_other_broadcasts_reach_cpos_only(market: Market) -> None:
    m = market
    for copies, sender in enumerate((m.em1, m.other), start=1):
        for party in everyone(m):
            party.received.clear()
        cc, pid = sender.party()
        reply = await m.client.put(
            m.hub.url(f"/ocpi/2.2.1/receiver/tokens/{cc}/{pid}/TOK1"),
            headers=sender.headers_to(HUB),
            content=b'{"uid":"TOK1"}',
        )
        assert reply.json()["status_code"] == 1000
        await wait_until(lambda: bool(m.cp1.received and m.cp2.received), 5, "copies to the CPOs")
        assert m.cp1.received[0].path == f"/ocpi/2.2.1/tokens/receiver/{cc}/{pid}/TOK1"
        await fan_outs_finished(m.hub, "tokens", 2 * copies)
        assert not any(p.received for p in (m.em1, m.em2, m.nsp, m.other, m.nap))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/ocpi/2.2.1/receiver/sessions/NL/CP1/S1"),
        ("POST", "/ocpi/2.2.1/receiver/cdrs"),
        ("POST", "/ocpi/2.2.1/receiver/commands/START_SESSION"),
        ("PUT", "/ocpi/2.2.1/receiver/chargingprofiles/S1"),
        ("GET", "/ocpi/2.2.1/sender/locations"),
        ("GET", "/ocpi/2.2.1/receiver/locations/NL/CP1/LOC1"),
        ("DELETE", "/ocpi/2.2.1/receiver/locations/NL/CP1/LOC1"),  # of broadcast DELETEs only a tariff's is carried
    ],
)
async def test_refused_broadcasts_are_2001_and_reach_nobody(market: Market, method: str, path: str) -> None:
    m = market
    body = b"{}" if method in ("PUT", "POST") else None
    before = counted(m.hub, "ocpihub_requests_total", outcome="client_error")
    reply = await m.client.request(method, m.hub.url(path), headers=m.cp1.headers_to(HUB), content=body)
    assert reply.status_code == 400
    assert reply.json()["status_code"] == 2001
    await refusal_counted(m.hub, before)
    assert not any(p.received for p in everyone(m))


async def test_fan_out_to_20_with_one_silent_recipient(hub_factory: HubFactory, store: PartyStore) -> None:
    released = asyncio.Event()
    hung_up = asyncio.Event()  # set when the test is done: the silent recipient's handler may end then
    arrivals: dict[str, float] = {}

    async def respond(r: Received) -> Response:
        party = r.headers["ocpi-to-party-id"]
        # No copy may be answered before the sender has its answer: if the hub waited for the fan-out,
        # this would deadlock and the test would time out.
        await asyncio.wait_for(released.wait(), 5)
        if party == "E00":
            await asyncio.wait_for(hung_up.wait(), 30)  # never answers within the per-recipient timeout
        arrivals[party] = time.monotonic()
        return ocpi()

    emsps = FakeParty([("BE", f"E{i:02d}", "EMSP") for i in range(20)], name="twenty", responder=respond)
    cpo = FakeParty([("NL", "CP1", "CPO")], name="cpo")
    async with hub_factory(forward_timeouts={"locations": 1.0}) as running, parties(emsps, cpo):
        await connect_party(store, running, emsps)
        await connect_party(store, running, cpo)
        await running.synced(store)
        async with httpx.AsyncClient(timeout=10) as client:
            reply = await client.put(
                running.url("/ocpi/2.2.1/receiver/locations/NL/CP1/LOC1"), headers=cpo.headers_to(HUB), content=LOCATION
            )
        answered = time.monotonic()
        assert reply.json()["status_code"] == 1000
        released.set()
        await wait_until(lambda: len(arrivals) == 19, 3, "19 answered copies")
        assert max(arrivals.values()) - answered < 1.0  # the silent one holds nobody up
        assert len(emsps.received) == 20
        assert {r.headers["ocpi-to-party-id"] for r in emsps.received} == {f"E{i:02d}" for i in range(20)}
        metrics = running.metrics
        await wait_until(
            lambda: (
                (
                    metrics.get_sample_value(
                        "ocpihub_broadcast_deliveries_total", {"module": "locations", "outcome": "timeout"}
                    )
                    or 0
                )
                == 1
            ),
            3,
            "the silent recipient's timeout",
        )
        assert (
            metrics.get_sample_value("ocpihub_broadcast_deliveries_total", {"module": "locations", "outcome": "ok"})
            == 19
        )
        assert time.monotonic() - answered < 1.0 + 1.0
        hung_up.set()


@pytest.mark.parametrize(
    ("sender", "path", "body", "http_status"),
    [
        ("cp1", "/ocpi/2.2.1/receiver/tariffs/NL/CP2/T1", b"{}", 400),  # another CPO's tariff
        ("em1", "/ocpi/2.2.1/receiver/locations/BE/EM1/L1", b"{}", 400),  # an eMSP owns no locations
        ("cp1", "/ocpi/2.2.1/sender/tokens/TOK1/authorize", b"{}", 400),  # a Sender interface
        ("cp1", "/ocpi/2.2.1/receiver/locations/NL/CP1/L1", b"{not json", 400),  # the hub answers: JSON or 400
    ],
)
async def test_broadcasts_the_hub_refuses(
    market: Market, sender: str, path: str, body: bytes, http_status: int
) -> None:
    m = market
    party = getattr(m, sender)
    before = counted(m.hub, "ocpihub_requests_total", outcome="client_error")
    reply = await m.client.put(m.hub.url(path), headers=party.headers_to(HUB), content=body)
    assert reply.status_code == http_status
    assert reply.json()["status_code"] == 2001
    await refusal_counted(m.hub, before)
    assert not any(p.received for p in everyone(m))
