"""The registry in Redis: platforms, parties, accepted-token digests, ClientInfo, relays and the scheduler lease.

Owns: every read and write of registry data. Check-then-write runs under WATCH/MULTI; every write bumps the
version and publishes it so each hub process rebuilds its snapshot (registry/snapshot.py).
Must not: decide routing, speak HTTP, or be awaited on the hot path.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, WatchError

from registry.codec import (
    RELAY_KEYS_NOTICE,
    ClientInfo,
    Handshake,
    LegacyRelay,
    PlatformRecord,
    decode_clientinfo,
    decode_legacy_relay,
    decode_platform,
    decode_relay_keys,
    encode_clientinfo,
    encode_platform,
)
from registry.keys import EVENTS_MAXLEN, RegistryKeys
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
#: Relay signing keys: ids 1..255 in turn; the current key and the one before it are kept (a rotation leaves URLs
#: signed just before it working), older ones are deleted. Every change is a registry version like any other.
_ROTATE_SCRIPT = """
local current = tonumber(redis.call('HGET', KEYS[1], 'current'))
if current and ARGV[3] == 'ensure' then return current end
local new = 1
if current then new = current % 255 + 1 end
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if field ~= 'current' and field ~= ('k' .. new) and (not current or field ~= ('k' .. current)) then
    redis.call('HDEL', KEYS[1], field)
  end
end
redis.call('HSET', KEYS[1], 'k' .. new, ARGV[1], 'current', new)
local version = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', KEYS[3], ARGV[2] .. '|' .. version)
return new
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


class PartyStore:
    """Registry operations on one Redis with one key prefix."""

    def __init__(self, redis: Redis, keys: RegistryKeys) -> None:
        self.redis = redis
        self.keys = keys

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

    async def touch(self, seen: dict[str, float]) -> None:
        """Record signs of life (platform id → epoch seconds), batched by each hub process."""
        if seen:
            await self.redis.hset(self.keys.last_seen(), mapping={k: str(v) for k, v in seen.items()})

    # -- writes --------------------------------------------------------------------------------------------

    async def declare(
        self, roles: Sequence[PartyRole], name: str, *, announce: bool = True
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

        async def write(pipe: Pipeline) -> None:
            owners = await pipe.hmget(self.keys.parties(), parties)
            taken = [p for p, owner in zip(parties, owners, strict=True) if owner is not None]
            if taken:
                raise PartyTakenError(f"party {taken[0]} is already declared; remove it first")
            _multi(pipe)
            pipe.hset(self.keys.parties(), mapping=dict.fromkeys(parties, record.id))
            pipe.hset(self.keys.tokens(), record.accept_digests[0], f"{record.id}|A")
            self._put(pipe, record, status_changed=announce)

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
    ) -> PlatformRecord:
        """Registration (token A) or update (token C): store what the handshake fetched, swap in token C.

        The token used must still open the platform in the expected state, so two concurrent POSTs with one
        token A cannot both succeed (credentials §7.1.1: token A is single-use).
        """
        expected = f"{platform_id}|{'C' if registered_before else 'A'}"
        used = used_digest.hex()
        new_digest = token_digest(token_c.encode()).hex()
        result: list[PlatformRecord] = []

        async def write(pipe: Pipeline) -> None:
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
            result.append(self._put(pipe, record, status_changed=status is not old.status))

        await self._transact(write, self.keys.tokens(), self.keys.platforms())
        return result[0]

    async def unregister(self, platform_id: str) -> PlatformRecord:
        """Credentials DELETE (§7.2.4): its tokens stop working, it is SUSPENDED until the operator acts."""
        return await self._update(
            platform_id,
            lambda r: replace(r, registered=False, status=ConnectionStatus.SUSPENDED, accept_digests=()),
        )

    async def suspend(self, platform_id: str) -> PlatformRecord:
        return await self._update(platform_id, lambda r: replace(r, status=ConnectionStatus.SUSPENDED))

    async def resume(self, platform_id: str) -> PlatformRecord:
        def back(record: PlatformRecord) -> PlatformRecord:
            status = ConnectionStatus.CONNECTED if record.registered else ConnectionStatus.PLANNED
            return replace(record, status=status)

        return await self._update(platform_id, back)

    async def set_liveness(self, platform_id: str, alive: bool) -> PlatformRecord | None:
        """CONNECTED ↔ OFFLINE from a liveness result; other statuses are the operator's and stay."""
        target = ConnectionStatus.CONNECTED if alive else ConnectionStatus.OFFLINE
        allowed = {ConnectionStatus.CONNECTED, ConnectionStatus.OFFLINE}

        def change(record: PlatformRecord) -> PlatformRecord:
            if record.status in allowed and record.registered:
                return replace(record, status=target)
            return record

        try:
            return await self._update(platform_id, change)
        except UnknownPlatformError:
            return None

    async def remove(self, platform_id: str) -> PlatformRecord:
        """Unregister and forget a platform; its ClientInfo stays, SUSPENDED (objects are never deleted)."""
        result: list[PlatformRecord] = []

        async def write(pipe: Pipeline) -> None:
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

        await self._transact(write, self.keys.platforms())
        return result[0]

    async def discard(self, platform_id: str) -> None:
        """Undo a declaration that never completed (a failed hub-initiated handshake): leave no trace."""

        async def write(pipe: Pipeline) -> None:
            raw = await pipe.hget(self.keys.platforms(), platform_id)
            if raw is None:
                return
            old = decode_platform(raw)
            _multi(pipe)
            if old.accept_digests:
                pipe.hdel(self.keys.tokens(), *old.accept_digests)
            pipe.hdel(self.keys.parties(), *sorted({str(r.party) for r in old.roles}))
            pipe.hdel(self.keys.platforms(), platform_id)
            pipe.hdel(self.keys.clientinfo(), *sorted(f"{r.party}:{r.role.value}" for r in old.roles))
            self._bump(pipe, platform_id)

        await self._transact(write, self.keys.platforms())

    # -- relays (rewritten Link / Location / response_url) -------------------------------------------------

    async def relay_keys(self) -> SigningKeys:
        """The keys relay URLs are signed and checked with (none until ``ensure_relay_key``)."""
        return decode_relay_keys(await self.redis.hgetall(self.keys.relay_keys()))

    async def ensure_relay_key(self) -> None:
        """Create the first signing key unless one exists (every hub process calls this at start-up)."""
        await self.redis.eval(
            _ROTATE_SCRIPT,
            3,
            self.keys.relay_keys(),
            self.keys.version(),
            self.keys.changes(),
            secrets.token_hex(32),
            RELAY_KEYS_NOTICE,
            "ensure",
        )

    async def rotate_relay_key(self) -> int:
        """A new current signing key; the previous one stays valid, older ones are dropped. Returns its id."""
        return int(
            await self.redis.eval(
                _ROTATE_SCRIPT,
                3,
                self.keys.relay_keys(),
                self.keys.version(),
                self.keys.changes(),
                secrets.token_hex(32),
                RELAY_KEYS_NOTICE,
                "rotate",
            )
        )

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

    async def _update(self, platform_id: str, change: Callable[[PlatformRecord], PlatformRecord]) -> PlatformRecord:
        result: list[PlatformRecord] = []

        async def write(pipe: Pipeline) -> None:
            old = await self._load(pipe, platform_id)
            new = change(old)
            _multi(pipe)
            removed = set(old.accept_digests) - set(new.accept_digests)
            if removed:
                pipe.hdel(self.keys.tokens(), *removed)
            result.append(self._put(pipe, new, status_changed=new.status is not old.status))

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

    def _bump(self, pipe: Pipeline, platform_id: str) -> None:
        """Every write: one version step and a notice ``platform_id|version`` (registry/snapshot.py)."""
        pipe.eval(_BUMP_SCRIPT, 2, self.keys.version(), self.keys.changes(), platform_id)

    async def _transact(self, write: Callable[[Pipeline], Any], *watch: str) -> None:
        for _ in range(_MAX_RETRIES):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(*watch)
                    await write(pipe)
                    await pipe.execute()
                    return
                except WatchError:
                    continue
        raise RegistryError("the registry is too busy; try again")


def _multi(pipe: Pipeline) -> None:
    pipe.multi()  # type: ignore[no-untyped-call]  # redis-py leaves Pipeline.multi unannotated


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
