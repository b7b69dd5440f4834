"""The routing snapshot against a real Redis: patched on change notices, rebuilt on a gap, never behind."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from registry.audit import Actor
from registry.connection import connect
from registry.keys import RegistryKeys
from registry.snapshot import SnapshotHolder
from registry.store import PartyStore
from routing.model import ConnectionStatus, PartyKey, PartyRole
from tests.support.fake_party import wait_until
from tests.support.redis_server import redis_server

#: Who the test's registry changes are made by (audit events name an actor).
TEST_ACTOR = Actor.cli("test", "localhost")

pytestmark = pytest.mark.integration

HUB = PartyKey("ZZ", "HUB")


@pytest.fixture
async def holder(store: PartyStore) -> AsyncIterator[SnapshotHolder]:
    holder = SnapshotHolder(store, HUB, poll_interval=0.05)
    task = asyncio.create_task(holder.run())
    await wait_until(lambda: holder.loaded, 5, "first load")
    yield holder
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_changes_are_patched_in(holder: SnapshotHolder, store: PartyStore) -> None:
    first = holder.table
    record, _ = await store.declare([PartyRole.parse("NL:AAA:CPO")], "a", actor=TEST_ACTOR)
    await wait_until(lambda: PartyKey("NL", "AAA") in holder.table.parties, 2, "the new party")
    assert holder.table.version == await store.version()
    assert first.parties == {}  # the old table is untouched: tables are immutable
    await store.suspend(record.id, actor=TEST_ACTOR)
    await wait_until(lambda: holder.table.platforms[record.id].status is ConnectionStatus.SUSPENDED, 2, "suspend")
    token_digests = set(holder.table.tokens)
    await store.remove(record.id, actor=TEST_ACTOR)
    await wait_until(lambda: record.id not in holder.table.platforms, 2, "removal")
    assert PartyKey("NL", "AAA") not in holder.table.parties
    assert not token_digests & set(holder.table.tokens)  # its token A no longer opens anything


async def test_a_change_without_notice_is_caught(holder: SnapshotHolder, store: PartyStore) -> None:
    record, _ = await store.declare([PartyRole.parse("NL:BBB:CPO")], "b", actor=TEST_ACTOR)
    await wait_until(lambda: PartyKey("NL", "BBB") in holder.table.parties, 2, "the new party")
    # A write that bumps the version but whose notice is lost (e.g. published during a reconnect).
    raw = await store.redis.hget(store.keys.platforms(), record.id)
    assert isinstance(raw, bytes)
    await store.redis.hset(store.keys.platforms(), record.id, raw.replace(b'"name":"b"', b'"name":"renamed"'))
    await store.redis.incr(store.keys.version())
    await wait_until(lambda: holder.table.platforms[record.id].name == "renamed", 2, "the unannounced change")
    assert holder.table.version == await store.version()


async def test_own_writes_apply_at_once(holder: SnapshotHolder, store: PartyStore) -> None:
    record, _ = await store.declare([PartyRole.parse("NL:CCC:CPO")], "c", actor=TEST_ACTOR)
    await holder.apply_own(record.id)
    assert PartyKey("NL", "CCC") in holder.table.parties
    before = holder.table
    await holder.apply_notices([(record.id, before.version)])  # its notice, arriving afterwards, changes nothing
    assert holder.table is before


async def still_holder(store: PartyStore) -> SnapshotHolder:
    """A holder without its run loop: only what the test applies reaches it."""
    holder = SnapshotHolder(store, HUB, poll_interval=0.05)
    await holder.reload()  # a registry without a relay key gets one (a version more): reloaded with it
    await holder.reload()
    return holder


async def test_a_stale_notice_does_not_hide_a_newer_change(store: PartyStore) -> None:
    holder = await still_holder(store)
    first, _ = await store.declare([PartyRole.parse("NL:DDD:CPO")], "d", actor=TEST_ACTOR)
    await holder.apply_own(first.id)
    seen = holder.table.version
    second, _ = await store.declare([PartyRole.parse("NL:EEE:CPO")], "e", actor=TEST_ACTOR)
    # The first write's notice comes late, together with the second's: both are judged by their versions.
    await holder.apply_notices([(first.id, seen), (second.id, seen + 1)])
    assert PartyKey("NL", "EEE") in holder.table.parties
    assert holder.table.version == seen + 1


async def test_a_missing_notice_means_a_full_reload(store: PartyStore) -> None:
    holder = await still_holder(store)
    version = holder.table.version
    await store.declare([PartyRole.parse("NL:HHH:CPO")], "h", actor=TEST_ACTOR)
    fourth, _ = await store.declare([PartyRole.parse("NL:III:CPO")], "i", actor=TEST_ACTOR)
    await holder.apply_notices([(fourth.id, version + 2)])  # the notice of version + 1 never came
    assert PartyKey("NL", "HHH") in holder.table.parties  # only a full reload can have brought it
    assert holder.table.version == version + 2


async def test_reachable_again_is_logged_after_an_outage_and_not_at_start(
    keys: RegistryKeys, caplog: pytest.LogCaptureFixture
) -> None:
    # An operator reading "registry reachable again" must be able to trust that there was an outage.
    caplog.set_level(logging.INFO, logger="registry.snapshot")
    with redis_server() as server:
        async with connect(server.url) as client:
            holder = SnapshotHolder(PartyStore(client, keys), HUB, poll_interval=0.05)
            task = asyncio.create_task(holder.run())
            try:
                await wait_until(lambda: holder.loaded and holder.reachable, 5, "first load")
                # Two more successful polls (each moves synced_at), not a sleep: the path that would log it ran.
                first = holder.synced_at
                await wait_until(lambda: holder.synced_at > first, 5, "a successful poll")
                second = holder.synced_at
                await wait_until(lambda: holder.synced_at > second, 5, "another successful poll")
                assert "registry reachable again" not in caplog.messages
                server.stop()
                await wait_until(lambda: not holder.reachable, 5, "the outage noticed")
                server.start()
                await wait_until(lambda: holder.reachable, 5, "back")
                assert caplog.messages.count("registry reachable again") == 1
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
