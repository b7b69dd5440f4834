"""Request forgery from inside an exchange (issue "Hold under faults and hostile traffic", point 6.5): a receiver
answering with a ``Link`` or ``Location`` that points at the cloud metadata address, the hub's own admin port, a
decimal or hex spelling of loopback, or another host behind userinfo; a sender's ``response_url`` doing the same.

Such a URL is dropped, or replaced by a relay that leads only to the owning platform's registered origin — followed,
it arrives there and nowhere else (a canary server on another loopback port is never contacted) — and a
``response_url`` on another host is 2001 with nothing forwarded. Registration-time URL checks are in
tests/integration/test_ssrf.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
from starlette.responses import Response

from registry.connection import connect
from registry.keys import RegistryKeys
from registry.store import PartyStore
from tests.support.chaos import drop_keys
from tests.support.fake_party import FakeParty, Received, ocpi
from tests.support.hostile import HostileReceiver
from tests.support.hubs import RunningHub, connect_party, parties, running_hub

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CPO = ("NL", "CPO")
EMSP = ("BE", "EMP")


@dataclass
class World:
    hub: RunningHub
    cpo: FakeParty
    emsp: FakeParty
    canary: HostileReceiver
    client: httpx.AsyncClient

    def targets(self, home: FakeParty) -> dict[str, str]:
        """URLs a hostile party might hand out, by name; ``home`` is the party whose answer carries them."""
        port = home.base_url.rsplit(":", 1)[1]
        admin = self.hub.app.admin_port
        return {
            "metadata": "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "admin-port": f"http://127.0.0.1:{admin}/metrics",
            "canary": f"{self.canary.base_url}/ocpi/2.2.1/locations/sender?offset=1",
            "decimal-loopback": f"http://2130706433:{port}/ocpi/2.2.1/locations/sender?offset=1",
            "hex-loopback": f"http://0x7f000001:{port}/ocpi/2.2.1/locations/sender?offset=1",
            "mapped-v6-loopback": f"http://[::ffff:127.0.0.1]:{port}/ocpi/2.2.1/locations/sender?offset=1",
            "userinfo": f"http://127.0.0.1:{port}@169.254.169.254/latest/meta-data/",
            "fragment": f"http://169.254.169.254#@127.0.0.1:{port}/ocpi/2.2.1/locations/sender",
            "lookalike-host": f"http://127.0.0.1:{port}.nip.io/ocpi/2.2.1/locations/sender",
        }


TARGETS = [
    "metadata",
    "admin-port",
    "canary",
    "decimal-loopback",
    "hex-loopback",
    "mapped-v6-loopback",
    "userinfo",
    "fragment",
    "lookalike-host",
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(redis_url: str) -> AsyncIterator[World]:
    """One hub and its parties for the whole module (each test resets what it changes: ``fresh``)."""
    keys = RegistryKeys(prefix=f"test:{uuid.uuid4().hex}:")
    canary = HostileReceiver()
    cpo = FakeParty([(*CPO, "CPO")], name="cpo")
    emsp = FakeParty([(*EMSP, "EMSP")], name="emsp")
    async with connect(redis_url) as redis:
        store = PartyStore(redis, keys)
        try:
            async with (
                canary.running(),
                parties(cpo, emsp),
                running_hub(redis_url, keys) as hub,
                httpx.AsyncClient(timeout=10) as client,
            ):
                await connect_party(store, hub, cpo)
                await connect_party(store, hub, emsp)
                await hub.synced(store)
                yield World(hub, cpo, emsp, canary, client)
        finally:
            await drop_keys(store, keys)


@pytest.fixture(autouse=True)
def fresh(world: World) -> None:
    """Each test starts with honest parties that have received nothing."""
    for party in (world.cpo, world.emsp):
        party.responder = None
        party.received.clear()
    world.canary.requests.clear()


def only_parties_dialed(w: World) -> None:
    """The hub connected to nothing but the two parties' own origins (RunningHub.dialed): no metadata address,
    no admin port, no canary, whatever the hostile URL said."""
    assert w.hub.dialed() <= {"127.0.0.1"}, w.hub.dialed()


def link_target(value: str) -> str:
    return value[value.index("<") + 1 : value.index(">")]


async def follow(w: World, url: str, sender: FakeParty, to: tuple[str, str], home: FakeParty) -> None:
    """A relay URL the hub handed out: it must be the hub's, and following it must reach ``home`` only."""
    assert url.startswith(w.hub.url("/ocpi/2.2.1/relay/")), url
    before = len(home.received)
    reply = await w.client.get(url, headers=sender.headers_to(to))
    assert reply.status_code == 200, reply.text
    assert len(home.received) == before + 1  # it arrived at the owning platform's own origin
    assert home.received[-1].path.startswith("/ocpi/2.2.1/")


@pytest.mark.parametrize("target", TARGETS)
async def test_a_link_elsewhere_is_dropped_or_leads_home(world: World, target: str) -> None:
    w = world
    url = w.targets(w.cpo)[target]

    def paged(r: Received) -> Response:
        if "offset=1" in r.query:
            return ocpi([{"id": "L2"}])
        return ocpi([{"id": "L1"}], headers={"Link": f'<{url}>; rel="next"', "X-Total-Count": "2"})

    w.cpo.responder = paged
    reply = await w.client.get(w.hub.url("/ocpi/2.2.1/sender/locations"), headers=w.emsp.headers_to(CPO))
    assert reply.status_code == 200 and reply.json()["status_code"] == 1000
    if "link" in reply.headers:
        await follow(w, link_target(reply.headers["link"]), w.emsp, CPO, w.cpo)
    assert not w.canary.requests
    only_parties_dialed(w)


@pytest.mark.parametrize("target", TARGETS)
async def test_a_cdr_location_elsewhere_is_dropped_or_leads_home(world: World, target: str) -> None:
    w = world
    url = w.targets(w.emsp)[target]
    w.emsp.responder = lambda _r: ocpi(headers={"Location": url})
    reply = await w.client.post(
        w.hub.url("/ocpi/2.2.1/receiver/cdrs"), headers=w.cpo.headers_to(EMSP), content=b'{"id":"CDR1"}'
    )
    assert reply.status_code == 200 and reply.json()["status_code"] == 1000
    if "location" in reply.headers:
        w.emsp.responder = None
        await follow(w, reply.headers["location"], w.cpo, EMSP, w.emsp)
    assert not w.canary.requests
    only_parties_dialed(w)


#: A Location on a module that has none in OCPI (only the CDR POST answer carries one): never passed on.
async def test_a_location_on_another_module_never_reaches_the_requester(world: World) -> None:
    w = world
    w.cpo.responder = lambda _r: ocpi(headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    reply = await w.client.get(w.hub.url("/ocpi/2.2.1/sender/locations"), headers=w.emsp.headers_to(CPO))
    assert reply.status_code == 200
    assert "location" not in reply.headers
    only_parties_dialed(w)


@pytest.mark.parametrize("target", [t for t in TARGETS if t != "metadata"])  # metadata: tests/e2e/test_routing.py
async def test_a_response_url_on_another_host_is_2001_and_nothing_is_forwarded(world: World, target: str) -> None:
    w = world
    url = w.targets(w.emsp)[target]
    command = b'{"location_id":"L1","response_url":"' + url.encode() + b'"}'
    path = w.hub.url("/ocpi/2.2.1/receiver/commands/START_SESSION")
    reply = await w.client.post(path, headers=w.emsp.headers_to(CPO), content=command)
    assert reply.status_code == 400 and reply.json()["status_code"] == 2001, reply.text
    # Positive signal: an honest command arrives, and it is the only thing that did.
    honest = b'{"location_id":"L1","response_url":"' + w.emsp.base_url.encode() + b'/ocpi/2.2.1/cb/1"}'
    assert (await w.client.post(path, headers=w.emsp.headers_to(CPO), content=honest)).json()["status_code"] == 1000
    assert len(w.cpo.received) == 1
    assert w.cpo.received[0].json["response_url"].startswith(w.hub.url("/ocpi/2.2.1/relay/"))
    only_parties_dialed(w)
    assert not w.canary.requests
