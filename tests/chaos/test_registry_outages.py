"""The registry's bad days (issue "Hold under faults and hostile traffic", point 6.1): a hub on a Redis of the
test's own that is stopped, frozen, restarted with its data, restarted empty, or given a record it cannot read.

Routing never waits for Redis (every request is answered from the snapshot), /readyz stays 200 and says whether the
registry is reachable, ``ocpihub_registry_up`` follows it, and once Redis is back the hub takes what Redis holds as
the truth without anyone writing to it first.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from registry.connection import connect
from registry.store import PartyStore
from tests.support.chaos import SteadyLoad, declare, readiness, scrape, steady_load, watching_readiness
from tests.support.fake_party import FakeParty, token_header
from tests.support.hubs import TEST_ACTOR, HubFactory, RunningHub, connect_party, parties
from tests.support.processes import poll
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

CPO = ("NL", "CPO")
EMSP = ("BE", "EMP")
#: The steady rate of routed requests while the registry misbehaves (20/s), and how long an outage lasts in requests.
PACE = 0.05
OUTAGE_REQUESTS = 60  # 3 s at PACE
#: redis-py's socket timeout of the hub's registry client (registry/connection.py ``socket_timeout``).
SOCKET_TIMEOUT = 10.0


@dataclass
class World:
    hub: RunningHub
    store: PartyStore
    redis: RedisServer
    cpo: FakeParty
    emsp: FakeParty
    cpo_id: str
    emsp_id: str
    client: httpx.AsyncClient

    async def route(self, sender: FakeParty | None = None, to: tuple[str, str] = CPO) -> tuple[int, int | None]:
        """A routed GET (eMSP → CPO's locations by default): (HTTP status, OCPI status_code)."""
        sender = sender or self.emsp
        reply = await self.client.get(self.hub.url("/ocpi/2.2.1/sender/locations"), headers=sender.headers_to(to))
        try:
            code = reply.json().get("status_code")
        except ValueError:
            code = None
        return reply.status_code, code

    async def routes_as(
        self,
        expected: tuple[int, int],
        timeout: float,
        what: str,
        since: float | None = None,
        sender: FakeParty | None = None,
        to: tuple[str, str] = CPO,
    ) -> float:
        """Seconds (from ``since``) until a routed request is answered ``expected``; the last answer if never."""
        seen: list[tuple[int, int | None]] = []

        async def there() -> bool:
            seen.append(await self.route(sender, to))
            return seen[-1] == expected

        try:
            return await poll(there, timeout, what, since=since)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: still answered {seen[-1] if seen else None}, not {expected}") from None

    async def ready(self) -> tuple[int, str, int | None]:
        seen = await readiness(self.client, self.hub.url("/readyz"))
        return seen.status, seen.registry, seen.snapshot_version

    async def registry_up(self) -> float:
        return (await scrape(self.client, self.hub.admin_url("/metrics"))).value("ocpihub_registry_up")

    async def wait_registry(self, state: str, timeout: float, since: float) -> float:
        """Seconds from ``since`` until /readyz says the registry is ``state`` (bounded)."""

        async def there() -> bool:
            return (await self.ready())[1] == state

        return await poll(there, timeout, f'/readyz to say "registry":"{state}"', since=since, interval=0.05)


@asynccontextmanager
async def world_on(
    hub_factory: HubFactory, own_redis: RedisServer, own_store: PartyStore, **settings: object
) -> AsyncIterator[World]:
    cpo = FakeParty([(*CPO, "CPO")], name="cpo")
    emsp = FakeParty([(*EMSP, "EMSP")], name="emsp")
    async with (
        parties(cpo, emsp),
        hub_factory(redis_url=own_redis.url, **settings) as hub,
        httpx.AsyncClient(timeout=20) as client,
    ):
        cpo_id = await connect_party(own_store, hub, cpo)
        emsp_id = await connect_party(own_store, hub, emsp)
        await hub.synced(own_store)
        world = World(hub, own_store, own_redis, cpo, emsp, cpo_id, emsp_id, client)
        assert await world.route() == (200, 1000)
        try:
            yield world
        finally:
            own_redis.thaw()  # a frozen registry would hold up the hub's shutdown (its last writes)


def unanswered(results: list[object]) -> list[object]:
    """Results of routed requests that are not HTTP 200 + OCPI 1000."""
    return [r for r in results if r != (200, 1000)]


async def outage_of(load: SteadyLoad, requests: int) -> None:
    """An outage lasts until the steady load has had ``requests`` more answers (3 s at its pace)."""
    await load.answered(len(load.results) + requests, timeout=requests * PACE * 4)


async def test_redis_stopped_and_back_with_its_data(
    hub_factory: HubFactory, own_redis: RedisServer, own_store: PartyStore
) -> None:
    """Stopped: routing goes on, /readyz 200 + "unreachable", registry_up 0. Back with the same data: "reachable"
    within 5 s without any registry write, and a change then reaches routing. No request lost through either."""
    async with world_on(hub_factory, own_redis, own_store) as w:
        version = await w.store.version()
        async with watching_readiness(w.hub.url("/readyz")) as probe, steady_load(w.route, PACE) as load:
            stopped, at_stop = time.monotonic(), len(load.results)
            w.redis.stop()
            noticed = await w.wait_registry("unreachable", 5.0, stopped)
            assert await w.registry_up() == 0
            await outage_of(load, OUTAGE_REQUESTS)
            restarted, at_restart = time.monotonic(), len(load.results)
            w.redis.start(keep_data=True)
            back = await w.wait_registry("reachable", 5.0, restarted)
            # Nothing was written to bring it back: the hub found the registry by itself.
            assert await w.store.version() == version
            assert await w.registry_up() == 1
            await load.answered(len(load.results) + 20, timeout=5)
        results = load.results
        assert not unanswered(results), f"{len(unanswered(results))} of {len(results)} lost: {unanswered(results)[:5]}"
        assert not probe.failures(), probe.failures()[:5]
        assert w.hub.app.runtime is not None and w.hub.app.runtime.holder.table.version == version
        outage = results[at_stop:at_restart]
        # The refresh loop rode the outage out itself: no background task failed and was restarted.
        metrics = await scrape(w.client, w.hub.admin_url("/metrics"))
        assert metrics.value("ocpihub_background_task_restarts_total") == 0

        # A change made once it is back reaches routing.
        changed = time.monotonic()
        await w.store.suspend(w.cpo_id, actor=TEST_ACTOR)
        took = await w.routes_as((200, 4003), 2.0, "the suspension to reach routing", since=changed)
    print(
        f"\nredis stopped: unreachable after {noticed:.2f} s; {len(outage)} of {len(outage)} routed during the "
        f"{restarted - stopped:.1f} s outage; reachable {back:.2f} s after restart; {len(results)} of {len(results)} "
        "answered in all (through the restart too); "
        f"suspension routed after {took:.2f} s"
    )


async def test_redis_frozen(hub_factory: HubFactory, own_redis: RedisServer, own_store: PartyStore) -> None:
    """SIGSTOP: connections stay open and nothing answers. Routing goes on; /readyz and registry_up say so within the
    client's socket timeout, as for a stopped Redis; after SIGCONT a change reaches routing."""
    async with world_on(hub_factory, own_redis, own_store) as w:
        async with watching_readiness(w.hub.url("/readyz")) as probe, steady_load(w.route, PACE) as load:
            frozen, at_freeze, frozen_at = time.monotonic(), len(load.results), time.time()
            w.redis.freeze()
            try:
                await outage_of(load, OUTAGE_REQUESTS)
                routed = len(load.results) - at_freeze
                assert not unanswered(load.results), unanswered(load.results)[:5]
                # The snapshot is not known to be current any more: the last-sync gauge stopped (an operator's alert
                # on its age fires), whatever /readyz says.
                metrics = await scrape(w.client, w.hub.admin_url("/metrics"))
                last_sync = metrics.value("ocpihub_registry_last_sync_timestamp_seconds")
                assert last_sync <= frozen_at + 0.5, last_sync - frozen_at
                print(
                    f"\nredis frozen: {routed} of {routed} routed in {time.monotonic() - frozen:.1f} s; last sync "
                    f"{time.time() - last_sync:.1f} s ago"
                )
                noticed = await w.wait_registry("unreachable", SOCKET_TIMEOUT + 2.0, frozen)
                assert await w.registry_up() == 0
            finally:
                w.redis.thaw()
            thawed = time.monotonic()
            back = await w.wait_registry("reachable", 5.0, thawed)
            await load.answered(len(load.results) + 10, timeout=5)
        results = load.results
        assert not unanswered(results), f"{len(unanswered(results))} of {len(results)} lost: {unanswered(results)[:5]}"
        assert not probe.failures(), probe.failures()[:5]
        await w.store.suspend(w.cpo_id, actor=TEST_ACTOR)
        await w.routes_as((200, 4003), 2.0, "the suspension to reach routing")
    print(f"redis frozen: unreachable after {noticed:.2f} s; reachable {back:.2f} s after SIGCONT")


async def test_redis_restarted_empty_is_the_truth(
    hub_factory: HubFactory, own_redis: RedisServer, own_store: PartyStore
) -> None:
    """Restarted without its data: the forgotten parties stop routing (401 for their tokens, 4001 as receivers) and a
    newly declared party can register."""
    async with world_on(hub_factory, own_redis, own_store) as w:
        before = (await w.ready())[2]
        assert before is not None and before > 0
        w.redis.stop()
        await w.wait_registry("unreachable", 5.0, time.monotonic())
        w.redis.start(keep_data=False)
        restarted = time.monotonic()

        async def emptied() -> bool:
            status, registry, version = await w.ready()
            # Empty, but for the relay signing key the hub creates at once in a registry without one (version 1).
            return status == 200 and registry == "reachable" and version == 1

        took = await poll(emptied, 5.0, "the hub to load the empty registry", since=restarted)
        assert await w.route() == (401, 2000)  # the eMSP's token is gone with it

        # The CPO is declared again (a new platform, new token A) and registers: credentials POST 1000.
        w.cpo.hub_token = ""
        _, token_a = await declare(w.store, w.cpo)
        await w.hub.synced(w.store)
        reply = await w.cpo.register(w.hub.versions_url, token_a)
        assert reply.status_code == 200 and reply.json()["status_code"] == 1000, reply.text
        await w.hub.synced(w.store)
        assert await w.route(sender=w.cpo, to=EMSP) == (200, 4001)  # the eMSP is unknown now
    print(f"\nredis restarted empty: taken as the truth {took:.2f} s after the restart")


async def test_relays_work_after_redis_restarted_empty(
    hub_factory: HubFactory, own_redis: RedisServer, own_store: PartyStore
) -> None:
    """After an empty restart, parties that register again can use everything, response_url relays included: the
    relay signing key lives in the registry, so it must come back with the registry, not only at start-up."""
    async with world_on(hub_factory, own_redis, own_store) as w:
        w.redis.stop()
        await w.wait_registry("unreachable", 5.0, time.monotonic())
        w.redis.start(keep_data=False)

        async def emptied() -> bool:
            return (await w.ready())[1:] == ("reachable", 1)  # empty but for the new relay signing key

        await poll(emptied, 5.0, "the hub to load the empty registry")
        for party in (w.cpo, w.emsp):
            party.hub_token = ""
            _, token_a = await declare(w.store, party)
            await w.hub.synced(w.store)
            reply = await party.register(w.hub.versions_url, token_a)
            assert reply.json()["status_code"] == 1000, reply.text
        await w.hub.synced(w.store)
        command = b'{"location_id":"L1","response_url":"' + w.emsp.base_url.encode() + b'/ocpi/2.2.1/cb/1"}'
        reply = await w.client.post(
            w.hub.url("/ocpi/2.2.1/receiver/commands/START_SESSION"), headers=w.emsp.headers_to(CPO), content=command
        )
        assert reply.json()["status_code"] == 1000, (
            f"a command with a valid response_url after the restart: {reply.text}"
        )
        relayed = w.cpo.received[-1].json["response_url"]
        assert relayed.startswith(w.hub.url("/ocpi/2.2.1/relay/"))


async def test_relays_work_for_a_hub_started_while_redis_was_down(
    hub_factory: HubFactory, own_redis: RedisServer, own_store: PartyStore
) -> None:
    """A hub that starts while the registry is down is not ready (503) until it has loaded a snapshot, then serves
    fully once Redis is up — relays included (the signing key is made at start-up, which found no Redis)."""
    own_redis.stop()
    cpo = FakeParty([(*CPO, "CPO")], name="cpo")
    emsp = FakeParty([(*EMSP, "EMSP")], name="emsp")
    async with (
        parties(cpo, emsp),
        hub_factory(redis_url=own_redis.url) as hub,
        httpx.AsyncClient(timeout=10) as client,
    ):
        down = await readiness(client, hub.url("/readyz"))
        assert (down.status, down.registry) == (503, "unreachable")
        own_redis.start(keep_data=False)

        async def ready() -> bool:
            return (await readiness(client, hub.url("/readyz"))).status == 200

        took = await poll(ready, 5.0, "the hub to be ready once Redis is up")
        await connect_party(own_store, hub, cpo)
        await connect_party(own_store, hub, emsp)
        await hub.synced(own_store)
        command = b'{"location_id":"L1","response_url":"' + emsp.base_url.encode() + b'/ocpi/2.2.1/cb/1"}'
        reply = await client.post(
            hub.url("/ocpi/2.2.1/receiver/commands/START_SESSION"), headers=emsp.headers_to(CPO), content=command
        )
        assert reply.json()["status_code"] == 1000, f"a command with a valid response_url: {reply.text}"
    print(f"\nhub started while redis was down: 503 until Redis was up, ready {took:.2f} s after it")


async def test_a_registry_back_at_the_same_version_with_other_data_is_the_truth(
    hub_factory: HubFactory, own_redis: RedisServer, own_store: PartyStore, tmp_path: Path
) -> None:
    """A failover to a replica that missed the last write and then took another (asynchronous replication): the
    registry comes back at the very version the hub holds, with other contents. The hub must take it as the truth,
    as it does a registry that went backwards — not keep routing on the lost write until the 5-minute reload."""
    async with world_on(hub_factory, own_redis, own_store) as w:
        await w.store.redis.save()  # what the replica has
        replica = RedisServer(tmp_path)
        shutil.copy(own_redis.directory / "dump.rdb", tmp_path / "dump.rdb")
        await w.store.suspend(w.emsp_id, actor=TEST_ACTOR)  # the write the replica never gets
        await w.hub.synced(w.store)
        assert await w.route() == (403, 2000)  # the eMSP, suspended, may not send
        version = await w.store.version()
        w.redis.stop(save=False)
        await w.wait_registry("unreachable", 5.0, time.monotonic())

        # The replica, promoted, takes another write: the same version number, other contents.
        replica.start(keep_data=True)
        try:
            async with connect(replica.url) as client:
                promoted = PartyStore(client, w.store.keys)
                await promoted.suspend(w.cpo_id, actor=TEST_ACTOR)
                assert await promoted.version() == version
        finally:
            replica.stop(save=True)
        shutil.copy(tmp_path / "dump.rdb", own_redis.directory / "dump.rdb")
        w.redis.start(keep_data=True)
        restarted = time.monotonic()

        # The eMSP may send again; the CPO is the one suspended.
        took = await w.routes_as((200, 4003), 5.0, "the hub to route by the promoted registry", since=restarted)
    print(f"\nregistry back at the same version with other data: routed by it {took:.2f} s after the restart")


REGISTRATIONS = 10


async def test_registrations_right_after_a_restart_are_whole_or_not_at_all(
    hub_factory: HubFactory, own_redis: RedisServer, own_store: PartyStore
) -> None:
    """10 credentials POSTs the moment Redis comes back: each is 1000, or nothing is stored and the same token A
    still works — never a registration committed behind an error answer (the party would hold no token C)."""
    newcomers = [FakeParty([("DE", f"C{i:02d}", "CPO")], name=f"cpo{i}") for i in range(REGISTRATIONS)]
    async with world_on(hub_factory, own_redis, own_store) as w, parties(*newcomers):
        declared = [await declare(w.store, p) for p in newcomers]
        await w.hub.synced(w.store)
        w.redis.stop()
        await w.wait_registry("unreachable", 5.0, time.monotonic())
        w.redis.start(keep_data=True)
        replies = await asyncio.gather(
            *(p.register(w.hub.versions_url, token_a) for p, (_, token_a) in zip(newcomers, declared, strict=True)),
            return_exceptions=True,
        )
        failed: list[str] = []
        refused = 0
        for party, (platform_id, token_a), reply in zip(newcomers, declared, replies, strict=True):
            record = await w.store.get(platform_id)
            assert record is not None
            ok = isinstance(reply, httpx.Response) and reply.status_code == 200 and reply.json()["status_code"] == 1000
            if ok:
                if not record.registered:
                    failed.append(f"{party.name}: answered 1000 but not stored")
                continue
            refused += 1
            if record.registered:
                failed.append(f"{party.name}: stored as registered behind {reply!r}")
                continue
            again = await party.register(w.hub.versions_url, token_a)
            if again.json()["status_code"] != 1000:
                failed.append(f"{party.name}: token A no longer works after {reply!r}: {again.text}")
        assert not failed, failed
        # Every newcomer holds a working token C.
        async with httpx.AsyncClient(timeout=5) as client:
            for party in newcomers:
                versions = await client.get(
                    w.hub.versions_url, headers={"Authorization": token_header(party.hub_token)}
                )
                assert versions.status_code == 200, f"{party.name}: {versions.text}"
    print(f"\nregistration right after a restart: {REGISTRATIONS - refused} of {REGISTRATIONS} answered 1000 at once")


async def test_an_unreadable_record_is_skipped_counted_and_logged(
    hub_factory: HubFactory, own_redis: RedisServer, own_store: PartyStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A platform record nobody can decode (a hand edit, a newer writer) is left out, counted and logged, and
    later changes of other parties still take effect."""
    caplog.set_level(logging.WARNING)
    async with world_on(hub_factory, own_redis, own_store) as w:
        redis = w.store.redis
        keys = w.store.keys
        # Written as a writer that bumps the version and announces its change would (registry/store.py _bump).
        await redis.hset(keys.platforms(), "0badc0de0badc0de", b'{"id": "0badc0de0badc0de", "roles": 7}')
        version = await redis.incr(keys.version())
        await redis.publish(keys.changes(), f"0badc0de0badc0de|{version}")

        async def counted() -> bool:
            metrics = await scrape(w.client, w.hub.admin_url("/metrics"))
            return metrics.value("ocpihub_registry_records_skipped_total") >= 1

        await poll(counted, 3.0, "ocpihub_registry_records_skipped_total to count the record")
        logged = [r for r in caplog.records if r.levelno >= logging.ERROR and "cannot be read" in r.getMessage()]
        assert logged, [r.getMessage() for r in caplog.records]
        assert await w.route() == (200, 1000)  # everyone else still routes

        await w.store.suspend(w.cpo_id, actor=TEST_ACTOR)
        await w.routes_as((200, 4003), 2.0, "a later suspension to reach routing")
        assert (await w.ready())[0] == 200
