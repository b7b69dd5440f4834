"""Each hub process's routing snapshot: built from Redis, swapped as one reference, refreshed on change.

Owns: turning registry records into ``routing.table.RoutingTable`` and keeping it fresh — pub/sub notices for
speed, a version poll as the safety net (a notice lost on reconnect is caught within one poll interval).
Must not: be awaited by a request; the hot path only reads ``holder.table``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import RedisError

from registry.codec import PlatformRecord
from registry.store import PartyStore, Snapshot
from routing.headers import authorization_value
from routing.model import InterfaceRole, ModuleID, PartyKey, TokenForm
from routing.table import Platform, RoutingTable, TokenGrant

log = logging.getLogger(__name__)

#: A full reload even when no version change was seen: the safety net under the safety net.
FULL_RELOAD_INTERVAL = 60.0
_MODULES = {m.value: m for m in ModuleID}
_ROLES = {r.value: r for r in InterfaceRole}


def build_platform(record: PlatformRecord) -> Platform:
    endpoints = {}
    for e in record.endpoints:
        module, role = _MODULES.get(e.identifier), _ROLES.get(e.role)
        if module is not None and role is not None:
            endpoints[(module, role)] = e.url
    auth = authorization_value(record.token_b, record.token_form is TokenForm.BASE64) if record.token_b else b""
    return Platform(
        id=record.id,
        name=record.name,
        roles=frozenset(record.roles),
        status=record.status,
        endpoints=endpoints,
        auth_header=auth,
        versions_url=record.versions_url,
        registered=record.registered,
    )


def build_table(snapshot: Snapshot, hub: PartyKey) -> RoutingTable:
    platforms = {r.id: build_platform(r) for r in snapshot.platforms}
    tokens = {}
    for digest_hex, grant in snapshot.tokens.items():
        platform_id, _, kind = grant.partition("|")
        digest = bytes.fromhex(digest_hex)
        tokens[digest] = TokenGrant(platform_id, digest, registered=kind == "C")
    return RoutingTable(version=snapshot.version, hub=hub, platforms=platforms, tokens=tokens)


class SnapshotHolder:
    """Holds the current RoutingTable; ``run()`` keeps it fresh until cancelled."""

    def __init__(self, store: PartyStore, hub: PartyKey, poll_interval: float) -> None:
        self.store = store
        self.hub = hub
        self.poll_interval = poll_interval
        self.table = RoutingTable.empty(hub)
        self.loaded = False
        self.loaded_at = 0.0
        self.reachable = False
        self._changed = asyncio.Event()

    async def reload(self) -> None:
        snapshot = await self.store.snapshot()
        self.table = build_table(snapshot, self.hub)
        self.loaded = True
        self.reachable = True
        self.loaded_at = time.time()
        log.debug("snapshot version %d loaded (%d platforms)", snapshot.version, len(snapshot.platforms))

    async def run(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self.store.redis.pubsub()
            try:
                await pubsub.subscribe(self.store.keys.changes())
                await self.reload()
                backoff = 0.1
                while True:
                    await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.poll_interval)
                    stale = time.time() - self.loaded_at > FULL_RELOAD_INTERVAL
                    if stale or await self.store.version() != self.table.version:
                        await self.reload()
            except (RedisError, OSError) as exc:
                self.reachable = False
                log.warning("registry unreachable, keeping snapshot version %d: %s", self.table.version, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py
