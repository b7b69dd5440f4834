"""Hub Client Info (mod_hub_client_info §15) and liveness through the real hub, one process and two."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from registry.keys import RegistryKeys
from registry.store import PartyStore
from routing.model import PartyKey, PartyRole
from tests.support.fake_party import FakeParty, token_header, wait_until
from tests.support.hubs import TEST_ACTOR, HubFactory, RunningHub, connect_party
from tests.support.processes import hub_env, hub_process, poll, run_ocpi_hub

pytestmark = pytest.mark.e2e


def statuses(observer: FakeParty, key: str) -> list[str]:
    """Every status pushed to ``observer`` about ``key`` (CC:PID:ROLE), in order."""
    return [
        f"{i['status']}"
        for i in observer.clientinfo_pushes
        if f"{i['country_code']}:{i['party_id']}:{i['role']}" == key
    ]


async def listed(client: httpx.AsyncClient, hub: RunningHub, token: str, query: str = "") -> httpx.Response:
    return await client.get(
        hub.url(f"/ocpi/2.2.1/hubclientinfo{query}"), headers={"Authorization": token_header(token)}
    )


@pytest.fixture
async def observer(hub: RunningHub, store: PartyStore) -> AsyncIterator[FakeParty]:
    async with FakeParty([("BE", "OBS", "EMSP")], name="observer").running() as party:
        await connect_party(store, hub, party)
        yield party


async def test_every_transition_is_pushed_and_listed(
    hub: RunningHub, store: PartyStore, observer: FakeParty, client: httpx.AsyncClient
) -> None:
    key = "NL:CPO:CPO"

    async def expect(status: str, count: int) -> None:
        await wait_until(
            lambda: statuses(observer, key)[-1:] == [status] and len(statuses(observer, key)) == count,
            5,
            f"{status} pushed",
        )
        page = (await listed(client, hub, observer.hub_token)).json()["data"]
        entry = next(i for i in page if i["party_id"] == "CPO")
        assert entry["status"] == status
        assert entry["role"] == "CPO"
        assert entry["last_updated"].endswith("Z")

    record, token_a = await store.declare([PartyRole.parse("NL:CPO:CPO")], "cpo", actor=TEST_ACTOR)
    await expect("PLANNED", 1)
    async with FakeParty([("NL", "CPO", "CPO")], name="cpo").running() as cpo:
        await hub.synced(store)
        assert (await cpo.register(hub.versions_url, token_a)).json()["status_code"] == 1000
        await expect("CONNECTED", 2)
        # The newcomer got the current list pushed: the observer's own entry.
        await wait_until(lambda: "BE:OBS:EMSP" in cpo.clientinfo, 5, "welcome push")
        assert cpo.clientinfo["BE:OBS:EMSP"]["status"] == "CONNECTED"
        assert "NL:CPO:CPO" not in cpo.clientinfo  # nobody is told about itself
        await store.suspend(record.id, actor=TEST_ACTOR)
        await expect("SUSPENDED", 3)
        await store.resume(record.id, actor=TEST_ACTOR)
        await expect("CONNECTED", 4)
        await store.remove(record.id, actor=TEST_ACTOR)
        await expect("SUSPENDED", 5)  # objects are never deleted: SUSPENDED (§15.2.1)
    assert statuses(observer, key) == ["PLANNED", "CONNECTED", "SUSPENDED", "CONNECTED", "SUSPENDED"]


async def test_list_pagination_and_filters(
    hub: RunningHub, store: PartyStore, observer: FakeParty, client: httpx.AsyncClient
) -> None:
    for i in range(5):
        await store.declare([PartyRole.parse(f"NL:P{i:02d}:CPO")], f"p{i}", actor=TEST_ACTOR)
    everything = (await listed(client, hub, observer.hub_token)).json()["data"]
    assert len(everything) == 6
    first = await listed(client, hub, observer.hub_token, "?limit=2")
    assert first.headers["x-total-count"] == "6"
    assert first.headers["x-limit"] == "2"
    assert len(first.json()["data"]) == 2
    collected, response = [], first
    while True:
        collected += response.json()["data"]
        link = response.headers.get("link")
        if link is None:
            break
        assert link.endswith('>; rel="next"')
        response = await client.get(
            link[1 : link.index(">")], headers={"Authorization": token_header(observer.hub_token)}
        )
    assert collected == everything
    # date_from inclusive, date_to exclusive (transport_and_format §4.1.4.1).
    pivot = everything[3]["last_updated"]
    later = (await listed(client, hub, observer.hub_token, f"?date_from={pivot}")).json()["data"]
    earlier = (await listed(client, hub, observer.hub_token, f"?date_to={pivot}")).json()["data"]
    assert all(i["last_updated"] >= pivot for i in later)
    assert all(i["last_updated"] < pivot for i in earlier)
    assert len(later) + len(earlier) == 6
    bad = await listed(client, hub, observer.hub_token, "?offset=x")
    assert bad.status_code == 400
    assert bad.json()["status_code"] == 2001


async def test_liveness_offline_and_back(hub_factory: HubFactory, store: PartyStore, client: httpx.AsyncClient) -> None:
    async with (
        hub_factory(liveness_interval=0.5, lease_ttl=1.0) as running,
        FakeParty([("BE", "OBS", "EMSP")], name="observer").running() as observer,
        FakeParty([("NL", "CPO", "CPO")], name="cpo").running() as cpo,
    ):
        await connect_party(store, running, observer)
        await connect_party(store, running, cpo)
        cpo.offline = True  # its versions endpoint fails: the still-alive check will too (§15.2.3)
        await wait_until(lambda: statuses(observer, "NL:CPO:CPO")[-1:] == ["OFFLINE"], 5, "OFFLINE push")
        await running.synced(store)
        started = time.monotonic()
        routed = await client.get(
            running.url("/ocpi/2.2.1/sender/locations"), headers=observer.headers_to(("NL", "CPO"))
        )
        assert routed.json()["status_code"] == 4003
        assert time.monotonic() - started < 0.5
        assert not cpo.received
        cpo.offline = False
        await wait_until(lambda: statuses(observer, "NL:CPO:CPO")[-1:] == ["CONNECTED"], 5, "CONNECTED push")
        record = await store.find(PartyKey("NL", "CPO"))
        assert record.status.value == "CONNECTED"
        # The observer kept talking to its versions endpoint: never OFFLINE.
        assert "OFFLINE" not in statuses(cpo, "BE:OBS:EMSP")


async def lease_holder(store: PartyStore) -> str:
    raw = await store.redis.get(store.keys.lease())
    assert isinstance(raw, bytes)
    return raw.decode()


async def everything_pushed(store: PartyStore) -> bool:
    """The scheduler's cursor is at the last registry change: every change has been pushed (the cursor moves only
    after a change's pushes were answered) and nothing is left that a lease holder would push again."""
    return not await store.events_after(await store.events_cursor())


async def test_lease_take_over_pushes_each_change_once(
    tmp_path: Path, redis_url: str, keys: RegistryKeys, store: PartyStore, client: httpx.AsyncClient
) -> None:
    env = hub_env(key_prefix=keys.prefix, lease_ttl="1")
    async with (
        hub_process("--redis-url", redis_url, env=env, log=tmp_path / "hub1.log") as hub1,
        hub_process("--redis-url", redis_url, env=env, log=tmp_path / "hub2.log") as hub2,
        FakeParty([("BE", "OBS", "EMSP")], name="observer").running() as observer,
    ):
        await asyncio.gather(hub1.wait_ready(15.0), hub2.wait_ready(15.0))
        _, token_a = await store.declare([PartyRole.parse("BE:OBS:EMSP")], "observer", actor=TEST_ACTOR)

        async def token_a_accepted() -> bool:
            ok = await client.get(hub1.versions_url, headers={"Authorization": token_header(token_a)})
            return ok.status_code == 200

        await poll(token_a_accepted, 1.0, "hub 1 to accept the new token A")
        assert (await observer.register(hub1.versions_url, token_a)).json()["status_code"] == 1000

        added = await run_ocpi_hub("registry", "--redis-url", redis_url, "add", "--party", "NL:AAA:CPO", env=env)
        assert added.returncode == 0, str(added)
        await wait_until(lambda: statuses(observer, "NL:AAA:CPO") == ["PLANNED"], 5, "first push")

        holder = await lease_holder(store)
        leader = hub1 if holder.startswith(f"{hub1.pid}:") else hub2
        survivor = hub2 if leader is hub1 else hub1
        assert holder.startswith(f"{leader.pid}:")
        os.kill(leader.pid, signal.SIGKILL)
        await leader.process.wait()

        added = await run_ocpi_hub("registry", "--redis-url", redis_url, "add", "--party", "NL:BBB:CPO", env=env)
        assert added.returncode == 0, str(added)
        await wait_until(lambda: statuses(observer, "NL:BBB:CPO") == ["PLANNED"], 5, "push after take-over")
        new_holder = await lease_holder(store)
        assert new_holder.startswith(f"{survivor.pid}:")
        removed = await run_ocpi_hub("registry", "--redis-url", redis_url, "suspend", "NL:AAA", env=env)
        assert removed.returncode == 0, str(removed)
        await wait_until(lambda: statuses(observer, "NL:AAA:CPO") == ["PLANNED", "SUSPENDED"], 5, "third push")
        # No sleeping "until a duplicate would have come": once the cursor is past the last change, no lease holder
        # has anything left to push, so what the observer holds now is all it will ever get of these changes.
        await poll(lambda: everything_pushed(store), 5.0, "the scheduler's cursor to reach the last change")
        assert statuses(observer, "NL:AAA:CPO") == ["PLANNED", "SUSPENDED"]
        assert statuses(observer, "NL:BBB:CPO") == ["PLANNED"]


async def test_every_path_to_connected_gets_the_list(
    hub: RunningHub, store: PartyStore, observer: FakeParty, redis_url: str
) -> None:
    """A platform registered by the hub (``registry connect``) or resumed hears of everyone already there, and
    everyone hears of it (issue: real third-party parties; the list used to follow only a party's own POST)."""
    async with FakeParty([("DE", "HIC", "CPO")], name="hub-initiated").running() as party:
        connected = await run_ocpi_hub(
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
            "DE:HIC:CPO",
            env=hub_env(key_prefix=store.keys.prefix),
        )
        assert connected.returncode == 0, str(connected)
        await wait_until(lambda: "BE:OBS:EMSP" in party.clientinfo, 5, "the list for the hub-initiated platform")
        assert party.clientinfo["BE:OBS:EMSP"]["status"] == "CONNECTED"
        await wait_until(lambda: "DE:HIC:CPO" in observer.clientinfo, 5, "the news for the others")
        # Resumed after a suspension: the list again (it may have missed changes meanwhile).
        record = await store.find(PartyKey("DE", "HIC"))
        await store.suspend(record.id, actor=TEST_ACTOR)
        await wait_until(lambda: observer.clientinfo["DE:HIC:CPO"]["status"] == "SUSPENDED", 5, "the suspension")
        party.clientinfo.clear()
        await store.resume(record.id, actor=TEST_ACTOR)
        await wait_until(lambda: "BE:OBS:EMSP" in party.clientinfo, 5, "the list after resume")
