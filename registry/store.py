"""The registry in Redis: platforms, parties, accepted-token digests, ClientInfo, relays and the scheduler lease.

Owns: every read and write of registry data. Check-then-write runs under WATCH/MULTI; every write bumps the
version and publishes it so each hub process rebuilds its snapshot (registry/snapshot.py), and queues its audit
event (registry/audit.py) in the same MULTI/EXEC, so a change is never stored without its event or the other way
round. Every write method takes the ``actor=`` who made it. A write that changes nothing stores nothing.
Connection errors are retried by the client (registry/connection.py); one that strikes inside a WATCHed
transaction surfaces as a WatchError, and the transaction runs again from its WATCHed reads.
Must not: decide routing, speak HTTP, or be awaited on the hot path.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Final

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, WatchError

from registry.audit import HUB, Action, Actor, AuditEvent, Change, log_event, platform_event, stage
from registry.codec import (
    RELAY_KEYS_NOTICE,
    ClientInfo,
    EndpointRecord,
    Handshake,
    LegacyRelay,
    PlatformRecord,
    RateLimit,
    decode_clientinfo,
    decode_legacy_relay,
    decode_platform,
    decode_relay_keys,
    encode_clientinfo,
    encode_platform,
)
from registry.keys import AUDIT_RETENTION_SECONDS, EVENTS_MAXLEN, RegistryKeys
from routing.datetimes import format_datetime
from routing.model import ConnectionStatus, PartyKey, PartyRole
from routing.table import SigningKeys, token_digest

_MAX_RETRIES = 20

#: What a caller outside registry/ catches when Redis is unreachable or fails.
REGISTRY_ERRORS: Final = (RedisError, OSError)

_LEASE_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if not holder or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""
_BUMP_SCRIPT = """
local version = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', KEYS[2], ARGV[1] .. '|' .. version)
return version
"""
#: Relay signing key ids run 1..255 and then start again at 1.
_MAX_RELAY_KEY_ID = 255
#: A counter whose window starts with its first count (Redis 6.2 has no EXPIRE NX).
_COUNT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""
_CURSOR_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""


class RegistryError(Exception):
    """A registry write that cannot be done as asked (the message is one line for the operator)."""


class PartyTakenError(RegistryError):
    """A party is already declared by another platform."""


class UnknownPlatformError(RegistryError):
    """No platform holds that party, or the platform is gone."""


class StaleTokenError(RegistryError):
    """The token used no longer opens this platform (used concurrently, rotated or revoked)."""


def new_token() -> str:
    """A fresh credentials token: 43 printable characters, 256 bits of entropy (credentials §7.3.1 string(64))."""
    return secrets.token_urlsafe(32)


def _now() -> str:
    return format_datetime(datetime.now(UTC))


#: A transaction body: WATCHed reads, then MULTI and the queued writes; returns the audit events to queue with them.
_Write = Callable[[Pipeline], Awaitable[Sequence[AuditEvent]]]


class PartyStore:
    """Registry operations on one Redis with one key prefix.

    ``retention_seconds``: how long audit events are kept (trimmed by age on every write).
    """

    def __init__(self, redis: Redis, keys: RegistryKeys, *, retention_seconds: float = AUDIT_RETENTION_SECONDS) -> None:
        self.redis = redis
        self.keys = keys
        self.retention_seconds = retention_seconds

    # -- reads ---------------------------------------------------------------------------------------------

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def version(self) -> int:
        raw = await self.redis.get(self.keys.version())
        return int(raw or 0)

    async def platforms_at(self, platform_ids: list[str]) -> tuple[int, dict[str, PlatformRecord | None]]:
        """Some platforms and the registry version they are current at (one consistent read)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(self.keys.version())
            pipe.hmget(self.keys.platforms(), platform_ids)
            version, raws = await pipe.execute()
        return int(version or 0), {
            pid: (None if raw is None else decode_platform(raw)) for pid, raw in zip(platform_ids, raws, strict=True)
        }

    async def platform_count(self) -> int:
        return int(await self.redis.hlen(self.keys.platforms()))

    async def scan_platforms(self, batch: int) -> AsyncIterator[list[bytes]]:
        """Every platform record's raw JSON, a batch at a time (HSCAN: memory stays one batch deep).

        Not a consistent read: records changed during the scan may come in either state, so a reader labels
        what it built with the version read before the scan and lets later change notices patch it.
        """
        cursor = 0
        while True:
            cursor, found = await self.redis.hscan(self.keys.platforms(), cursor, count=batch)
            values = found.values() if isinstance(found, dict) else found[1::2]  # redis-py types both shapes
            if values:
                yield [raw if isinstance(raw, bytes) else raw.encode() for raw in values]
            if cursor == 0:
                return

    async def platforms(self) -> list[PlatformRecord]:
        raw = await self.redis.hgetall(self.keys.platforms())
        return sorted((decode_platform(v) for v in raw.values()), key=lambda p: (p.created, p.id))

    async def get(self, platform_id: str) -> PlatformRecord | None:
        raw = await self.redis.hget(self.keys.platforms(), platform_id)
        return None if raw is None else decode_platform(raw)

    async def find(self, party: PartyKey) -> PlatformRecord:
        platform_id = await self.redis.hget(self.keys.parties(), str(party))
        record = None if platform_id is None else await self.get(_text(platform_id))
        if record is None:
            raise UnknownPlatformError(f"unknown party {party}")
        return record

    async def clientinfos(self) -> list[ClientInfo]:
        raw = await self.redis.hgetall(self.keys.clientinfo())
        return sorted((decode_clientinfo(v) for v in raw.values()), key=lambda c: (c.last_updated, c.key))

    async def public_url(self) -> str | None:
        raw = await self.redis.get(self.keys.public_url())
        return None if raw is None else _text(raw)

    async def set_public_url(self, url: str) -> None:
        await self.redis.set(self.keys.public_url(), url)

    async def last_seen(self) -> dict[str, float]:
        raw = await self.redis.hgetall(self.keys.last_seen())
        return {_text(k): float(v) for k, v in raw.items()}

    async def last_seen_of(self, platform_ids: Sequence[str]) -> dict[str, float]:
        """The last sign of life of some platforms (one HMGET), for those that have one."""
        if not platform_ids:
            return {}
        values = await self.redis.hmget(self.keys.last_seen(), list(platform_ids))
        seen: dict[str, float] = {}
        for platform_id, value in zip(platform_ids, values, strict=True):
            if value is not None:
                try:
                    seen[platform_id] = float(value)
                except ValueError:
                    continue
        return seen

    async def lease_holder(self) -> str | None:
        """Who holds the scheduler lease (``pid:uuid``), or None."""
        raw = await self.redis.get(self.keys.lease())
        return None if raw is None else _text(raw)

    async def touch(self, seen: dict[str, float]) -> None:
        """Record signs of life (platform id → epoch seconds), batched by each hub process."""
        if seen:
            await self.redis.hset(self.keys.last_seen(), mapping={k: str(v) for k, v in seen.items()})

    # -- writes --------------------------------------------------------------------------------------------

    async def declare(
        self, roles: Sequence[PartyRole], name: str, *, actor: Actor, announce: bool = True
    ) -> tuple[PlatformRecord, str]:
        """A platform that may register holding exactly ``roles``; returns it and its token A.

        ``announce=False`` records no PLANNED ClientInfo: the hub-initiated handshake declares a platform only
        for the seconds the handshake takes, and announces it when (if) it completes.
        """
        if not roles:
            raise RegistryError("at least one --party is required")
        if len(set(roles)) != len(roles):
            raise RegistryError("a party and role is given twice")
        token_a = new_token()
        now = _now()
        record = PlatformRecord(
            id=secrets.token_hex(8),
            name=name or str(roles[0].party),
            roles=tuple(roles),
            status=ConnectionStatus.PLANNED,
            registered=False,
            created=now,
            status_since=now,
            accept_digests=(token_digest(token_a.encode()).hex(),),
        )
        parties = sorted({str(r.party) for r in roles})

        async def write(pipe: Pipeline) -> Sequence[AuditEvent]:
            owners = await pipe.hmget(self.keys.parties(), parties)
            taken = [p for p, owner in zip(parties, owners, strict=True) if owner is not None]
            if taken:
                raise PartyTakenError(f"party {taken[0]} is already declared; remove it first")
            _multi(pipe)
            pipe.hset(self.keys.parties(), mapping=dict.fromkeys(parties, record.id))
            pipe.hset(self.keys.tokens(), record.accept_digests[0], f"{record.id}|A")
            self._put(pipe, record, status_changed=announce)
            return (platform_event(now, actor, "declare", None, record),)

        await self._transact(write, self.keys.parties())
        return record, token_a

    async def apply_credentials(
        self,
        platform_id: str,
        used_digest: bytes,
        *,
        registered_before: bool,
        handshake: Handshake,
        token_c: str,
        actor: Actor,
    ) -> PlatformRecord:
        """Registration (token A) or update (token C): store what the handshake fetched, swap in token C.

        The token used must still open the platform in the expected state, so two concurrent POSTs with one
        token A cannot both succeed (credentials §7.1.1: token A is single-use). The operator's endpoint
        overrides and rate limit are kept: only ``endpoints`` is replaced.
        """
        expected = f"{platform_id}|{'C' if registered_before else 'A'}"
        used = used_digest.hex()
        new_digest = token_digest(token_c.encode()).hex()
        result: list[PlatformRecord] = []

        async def write(pipe: Pipeline) -> Sequence[AuditEvent]:
            result.clear()
            grant = await pipe.hget(self.keys.tokens(), used)
            raw = await pipe.hget(self.keys.platforms(), platform_id)
            if grant is None or _text(grant) != expected or raw is None:
                raise StaleTokenError("the credentials token was used or revoked meanwhile")
            old = decode_platform(raw)
            status = old.status if old.status is ConnectionStatus.SUSPENDED else ConnectionStatus.CONNECTED
            record = replace(
                old,
                registered=True,
                status=status,
                accept_digests=(new_digest,),
                versions_url=handshake.versions_url,
                version=handshake.version,
                endpoints=handshake.endpoints,
                token_b=handshake.token_b,
                token_form=handshake.token_form,
                business_details=handshake.business_details,
            )
            _multi(pipe)
            pipe.hdel(self.keys.tokens(), *old.accept_digests)
            pipe.hset(self.keys.tokens(), new_digest, f"{platform_id}|C")
            stored = self._put(pipe, record, status_changed=status is not old.status)
            result.append(stored)
            action: Action = "update" if registered_before else "register"
            return (platform_event(_now(), actor, action, old, stored),)

        await self._transact(write, self.keys.tokens(), self.keys.platforms())
        return result[0]

    async def unregister(self, platform_id: str, *, actor: Actor) -> PlatformRecord:
        """Credentials DELETE (§7.2.4): its tokens stop working, it is SUSPENDED until the operator acts."""
        return await self._update(
            platform_id,
            lambda r: replace(r, registered=False, status=ConnectionStatus.SUSPENDED, accept_digests=()),
            actor=actor,
            action="unregister",
        )

    async def suspend(self, platform_id: str, *, actor: Actor) -> PlatformRecord:
        return await self._update(
            platform_id, lambda r: replace(r, status=ConnectionStatus.SUSPENDED), actor=actor, action="suspend"
        )

    async def resume(self, platform_id: str, *, actor: Actor) -> PlatformRecord:
        def back(record: PlatformRecord) -> PlatformRecord:
            if record.status is not ConnectionStatus.SUSPENDED:
                return record  # OFFLINE is the liveness check's to end, not the operator's
            status = ConnectionStatus.CONNECTED if record.registered else ConnectionStatus.PLANNED
            return replace(record, status=status)

        return await self._update(platform_id, back, actor=actor, action="resume")

    async def set_liveness(self, platform_id: str, alive: bool, *, actor: Actor) -> PlatformRecord | None:
        """CONNECTED ↔ OFFLINE from a liveness result; other statuses are the operator's and stay.

        Only a change of status is written (and audited): a party that stays alive costs no registry version.
        """
        target = ConnectionStatus.CONNECTED if alive else ConnectionStatus.OFFLINE
        allowed = {ConnectionStatus.CONNECTED, ConnectionStatus.OFFLINE}

        def change(record: PlatformRecord) -> PlatformRecord:
            if record.status in allowed and record.registered:
                return replace(record, status=target)
            return record

        try:
            return await self._update(platform_id, change, actor=actor, action="liveness")
        except UnknownPlatformError:
            return None

    async def set_endpoint_override(
        self, platform_id: str, endpoint: EndpointRecord, *, actor: Actor
    ) -> PlatformRecord:
        """The operator's endpoint for one module and role (replacing an earlier override of the same pair).

        The URL must have been validated by the caller (hub/cli.py, with the party URL policy): registry/ cannot
        resolve names or know the allowed networks.
        """

        def change(record: PlatformRecord) -> PlatformRecord:
            kept = [
                e for e in record.endpoint_overrides if (e.identifier, e.role) != (endpoint.identifier, endpoint.role)
            ]
            overrides = tuple(sorted([*kept, endpoint], key=lambda e: (e.identifier, e.role)))
            return replace(record, endpoint_overrides=overrides)

        return await self._update(platform_id, change, actor=actor, action="endpoint")

    async def remove_endpoint_override(
        self, platform_id: str, module: str, role: str, *, actor: Actor
    ) -> PlatformRecord:
        """Drop the operator's endpoint for one module and role; RegistryError when there is none."""

        def change(record: PlatformRecord) -> PlatformRecord:
            kept = tuple(e for e in record.endpoint_overrides if (e.identifier, e.role) != (module, role))
            if len(kept) == len(record.endpoint_overrides):
                raise RegistryError(f"no endpoint override for {module} {role} on platform {record.id}")
            return replace(record, endpoint_overrides=kept)

        return await self._update(platform_id, change, actor=actor, action="endpoint")

    async def set_rate_limit(self, platform_id: str, limit: RateLimit | None, *, actor: Actor) -> PlatformRecord:
        """The platform's rate limit (None: unlimited)."""
        return await self._update(platform_id, lambda r: replace(r, rate_limit=limit), actor=actor, action="limit")

    async def remove(self, platform_id: str, *, actor: Actor) -> PlatformRecord:
        """Unregister and forget a platform; its ClientInfo stays, SUSPENDED (objects are never deleted)."""
        result: list[PlatformRecord] = []

        async def write(pipe: Pipeline) -> Sequence[AuditEvent]:
            result.clear()
            old = await self._load(pipe, platform_id)
            gone = replace(old, status=ConnectionStatus.SUSPENDED, registered=False, accept_digests=())
            _multi(pipe)
            if old.accept_digests:
                pipe.hdel(self.keys.tokens(), *old.accept_digests)
            pipe.hdel(self.keys.parties(), *sorted({str(r.party) for r in old.roles}))
            pipe.hdel(self.keys.platforms(), platform_id)
            pipe.hdel(self.keys.last_seen(), platform_id)
            self._status_changed(pipe, gone)
            self._bump(pipe, platform_id)
            result.append(old)
            return (platform_event(_now(), actor, "remove", old, None),)

        await self._transact(write, self.keys.platforms())
        return result[0]

    async def discard(self, platform_id: str, *, actor: Actor) -> None:
        """Undo a declaration that never completed (a failed hub-initiated handshake): no trace is left in the
        registry (platform, parties, tokens, ClientInfo); the audit trail keeps its declare and its discard."""

        async def write(pipe: Pipeline) -> Sequence[AuditEvent]:
            raw = await pipe.hget(self.keys.platforms(), platform_id)
            if raw is None:
                return ()
            old = decode_platform(raw)
            _multi(pipe)
            if old.accept_digests:
                pipe.hdel(self.keys.tokens(), *old.accept_digests)
            pipe.hdel(self.keys.parties(), *sorted({str(r.party) for r in old.roles}))
            pipe.hdel(self.keys.platforms(), platform_id)
            pipe.hdel(self.keys.last_seen(), platform_id)
            pipe.hdel(self.keys.clientinfo(), *sorted(f"{r.party}:{r.role.value}" for r in old.roles))
            self._bump(pipe, platform_id)
            return (platform_event(_now(), actor, "discard", old, None),)

        await self._transact(write, self.keys.platforms())

    # -- relays (rewritten Link / Location / response_url) -------------------------------------------------

    async def relay_keys(self) -> SigningKeys:
        """The keys relay URLs are signed and checked with (none until ``ensure_relay_key``)."""
        return decode_relay_keys(await self.redis.hgetall(self.keys.relay_keys()))

    async def ensure_relay_key(self, *, actor: Actor = HUB) -> None:
        """Create the first signing key unless one exists (every hub process calls this at start-up)."""
        await self._relay_key(actor, rotate=False)

    async def rotate_relay_key(self, *, actor: Actor) -> int:
        """A new current signing key; the previous one stays valid, older ones are dropped. Returns its id.

        Ids run 1..255 in turn. Keeping the previous key lets URLs signed just before a rotation keep working
        until the next one. Every change is a registry version like any other, and audited (ids only).
        """
        return await self._relay_key(actor, rotate=True)

    async def _relay_key(self, actor: Actor, *, rotate: bool) -> int:
        result: list[int] = []

        async def write(pipe: Pipeline) -> Sequence[AuditEvent]:
            result.clear()
            raw = await pipe.hget(self.keys.relay_keys(), "current")
            current = int(raw) if raw is not None else 0
            if current and not rotate:
                result.append(current)
                return ()
            new = current % _MAX_RELAY_KEY_ID + 1
            stale = [
                field
                for field in map(_text, await pipe.hkeys(self.keys.relay_keys()))
                if field not in ("current", f"k{new}", f"k{current}")
            ]
            _multi(pipe)
            if stale:
                pipe.hdel(self.keys.relay_keys(), *stale)
            pipe.hset(self.keys.relay_keys(), mapping={f"k{new}": secrets.token_hex(32), "current": str(new)})
            self._bump(pipe, RELAY_KEYS_NOTICE)
            result.append(new)
            change = Change("relay_key", current or None, new)
            return (AuditEvent(_now(), actor, "relay-key", "", (), (change,)),)

        await self._transact(write, self.keys.relay_keys())
        return result[0]

    async def registration_failures(self, digest: bytes) -> tuple[int, int]:
        """Failed registrations with one token A in the current window, and the seconds the window has left."""
        key = self.keys.registration_failures(digest.hex())
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.ttl(key)
            count, ttl = await pipe.execute()
        return int(count or 0), max(int(ttl), 0)

    async def note_registration_failure(self, digest: bytes, window: int) -> None:
        """Count one failed registration with a token A; the window starts with the first failure."""
        await self.redis.eval(_COUNT_SCRIPT, 1, self.keys.registration_failures(digest.hex()), window)

    async def legacy_relay(self, relay_id: str) -> LegacyRelay | None:
        """A relay id handed out by release 0.1 (kept in Redis with a TTL), until those expire."""
        raw = await self.redis.get(self.keys.relay(relay_id))
        return None if raw is None else decode_legacy_relay(raw)

    # -- scheduler: lease and ClientInfo events ------------------------------------------------------------

    async def hold_lease(self, owner: str, ttl_ms: int) -> bool:
        """Take the scheduler lease, or renew it if ``owner`` holds it; False while another process does."""
        return bool(await self.redis.eval(_LEASE_SCRIPT, 1, self.keys.lease(), owner, ttl_ms))

    async def release_lease(self, owner: str) -> None:
        await self.redis.eval(_RELEASE_SCRIPT, 1, self.keys.lease(), owner)

    async def events_after(self, cursor: str, count: int = 100) -> list[tuple[str, ClientInfo]]:
        """ClientInfo changes after ``cursor`` (a stream id), oldest first."""
        entries = await self.redis.xrange(self.keys.events(), min=f"({cursor}" if cursor != "0" else "-", count=count)
        result = []
        for entry_id, fields in entries or ():
            if entry_id is not None and fields:
                result.append((_text(entry_id), decode_clientinfo(fields[b"clientinfo"])))
        return result

    async def events_cursor(self) -> str:
        raw = await self.redis.get(self.keys.events_cursor())
        return "0" if raw is None else _text(raw)

    async def advance_cursor(self, owner: str, cursor: str, ttl_ms: int) -> bool:
        """Mark events up to ``cursor`` pushed and renew the lease, only while ``owner`` holds it (fencing)."""
        keys = (self.keys.lease(), self.keys.events_cursor())
        return bool(await self.redis.eval(_CURSOR_SCRIPT, 2, *keys, owner, cursor, ttl_ms))

    # -- internals -----------------------------------------------------------------------------------------

    async def _update(
        self,
        platform_id: str,
        change: Callable[[PlatformRecord], PlatformRecord],
        *,
        actor: Actor,
        action: Action,
    ) -> PlatformRecord:
        """Read, change and write one platform; nothing is written (or audited) when ``change`` changes nothing."""
        result: list[PlatformRecord] = []

        async def write(pipe: Pipeline) -> Sequence[AuditEvent]:
            result.clear()
            old = await self._load(pipe, platform_id)
            new = change(old)
            if new == old:
                result.append(old)
                return ()
            _multi(pipe)
            removed = set(old.accept_digests) - set(new.accept_digests)
            if removed:
                pipe.hdel(self.keys.tokens(), *removed)
            stored = self._put(pipe, new, status_changed=new.status is not old.status)
            result.append(stored)
            return (platform_event(_now(), actor, action, old, stored),)

        await self._transact(write, self.keys.platforms())
        return result[0]

    async def _load(self, pipe: Pipeline, platform_id: str) -> PlatformRecord:
        """Read a platform inside a WATCHed transaction; UnknownPlatformError when it is gone."""
        raw = await pipe.hget(self.keys.platforms(), platform_id)
        if raw is None:
            raise UnknownPlatformError("that platform is gone")
        return decode_platform(raw)

    def _put(self, pipe: Pipeline, record: PlatformRecord, *, status_changed: bool) -> PlatformRecord:
        if status_changed:
            record = replace(record, status_since=_now())
            self._status_changed(pipe, record)
        pipe.hset(self.keys.platforms(), record.id, encode_platform(record))
        self._bump(pipe, record.id)
        return record

    def _status_changed(self, pipe: Pipeline, record: PlatformRecord) -> None:
        infos = [ClientInfo(r.party, r.role, record.status, record.status_since) for r in record.roles]
        pipe.hset(self.keys.clientinfo(), mapping={i.key: encode_clientinfo(i) for i in infos})
        for info in infos:
            pipe.xadd(self.keys.events(), {"clientinfo": encode_clientinfo(info)}, maxlen=EVENTS_MAXLEN)

    def _bump(self, pipe: Pipeline, notice: str) -> None:
        """Every write: one version step and a notice ``platform_id|version`` (registry/snapshot.py)."""
        pipe.eval(_BUMP_SCRIPT, 2, self.keys.version(), self.keys.changes(), notice)

    async def _transact(self, write: _Write, *watch: str) -> None:
        """Run ``write`` under WATCH until it applies; its audit events go into the same MULTI/EXEC and, once
        applied, to the log. A WatchError (a concurrent write, or a connection lost mid-transaction) re-runs
        ``write`` from its reads, so a retried transaction never acts on what it read before."""
        for _ in range(_MAX_RETRIES):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(*watch)
                    events = await write(pipe)
                    now_ms = int(time.time() * 1000)
                    for event in events:
                        stage(pipe, self.keys, event, now_ms=now_ms, retention_seconds=self.retention_seconds)
                    await pipe.execute()
                except WatchError:
                    continue
            for event in events:
                log_event(event)
            return
        raise RegistryError("the registry is too busy; try again")


def _multi(pipe: Pipeline) -> None:
    pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves Pipeline.multi unannotated


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
