"""Message tracking storage: one ``TraceRecord`` per request, broadcast copy, relayed call, refusal, Hub Client Info
push and liveness check, kept in one Redis stream shared by every hub process, so ``ocpi-hub trace ID`` can follow
a message across all of them and ``ocpi-hub registry traffic`` can sum up a party's recent traffic.

Owns: ``TraceRecord`` and its stream codec, the stream's bounds (MAXLEN ~ count on every XADD, MINID ~ age once
per batch: whichever trims first), and the bounded newest-first scans behind ``find``, ``journey`` and
``traffic``.
Must not: be written to from a request (hub/tracking.py batches records off the hot path), or hold a token, a
body or a query value: ``path`` is stored with its query values dropped (keys kept), whatever the caller passed.

Memory, measured on the wheel's Redis 6.2 (a throwaway script writing 100,000 records through ``write`` in batches
of 1,000: three 32-character hex ids, a 16-character platform id, two parties, a 43-character path, every number
set): 26.5 MB by the INFO used_memory delta, 28.3 MB by MEMORY USAGE of the stream — about 270 bytes a record,
most of it the three ids. Every entry has the same fields, so Redis keeps the field names once per stream node, not
per entry; numbers are stored as integers (milliseconds, microseconds), which listpacks keep as integers. The
default bound (keys.TRACE_MAX_RECORDS, 250,000 records) is therefore about 70 MB of the registry's Redis.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final
from urllib.parse import parse_qsl

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from registry.audit import stream_entries
from registry.keys import TRACE_MAX_AGE_SECONDS, TRACE_MAX_RECORDS, RegistryKeys
from routing.model import PartyKey

#: Stream entries read per XREVRANGE call.
READ_BATCH: Final = 2_000
#: The most entries one ``find`` or ``traffic`` call looks at (newest first): bounded work for a CLI question.
SCAN_LIMIT: Final = 500_000
#: Errors ``traffic`` lists, newest first.
RECENT_ERRORS: Final = 20
#: Outcomes that are not errors ("" when the caller set none).
_FINE: Final = frozenset({"", "ok"})


class TraceKind(StrEnum):
    REQUEST = "request"
    BROADCAST_COPY = "broadcast_copy"
    RELAY = "relay"
    REFUSAL = "refusal"
    CLIENTINFO_PUSH = "clientinfo_push"
    LIVENESS = "liveness"


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """What the hub did with one message: who, to whom, how it ended. Never a token, a body or a query value."""

    #: Epoch seconds when the hub received (or, for pushes and checks, sent) the message.
    time: float
    kind: TraceKind
    correlation_id: str = ""
    #: The X-Request-ID the hub received (or, for its own calls, sent).
    request_id: str = ""
    #: The X-Request-ID the hub minted for the forwarded copy.
    request_id_out: str = ""
    from_party: PartyKey | None = None
    to_party: PartyKey | None = None
    #: The authenticated platform's id ("" when none was).
    platform: str = ""
    module: str = ""
    interface: str = ""
    method: str = ""
    #: Path as requested; stored with query values dropped (``?offset=&limit=``).
    path: str = ""
    #: HTTP status answered (None: no answer, e.g. the sender went away).
    status: int | None = None
    ocpi_status: int | None = None
    outcome: str = ""
    latency_ms: float = 0.0
    attempts: int = 1
    #: The hub worker process that handled it.
    pid: int = 0

    @property
    def failed(self) -> bool:
        """An error of any kind: an outcome other than ok, an HTTP error or an OCPI error status."""
        return self.outcome not in _FINE or (self.status or 0) >= 400 or (self.ocpi_status or 1000) >= 2000

    def ids(self) -> tuple[str, str, str]:
        return self.correlation_id, self.request_id, self.request_id_out


def strip_query_values(path: str) -> str:
    """``/x?offset=10&limit=5`` → ``/x?offset=&limit=``: the keys say what was asked, values may be personal."""
    head, sep, query = path.partition("?")
    if not sep:
        return head
    keys = [key for key, _ in parse_qsl(query.partition("#")[0], keep_blank_values=True)]
    return head + "?" + "&".join(f"{key}=" for key in keys) if keys else head


#: Stream field names, in order. Every entry carries all of them (empty when unset), so Redis keeps the names once
#: per stream node (the "same fields" flag) instead of once per entry.
FIELDS: Final = (
    "time_ms",
    "kind",
    "correlation_id",
    "request_id",
    "request_id_out",
    "from",
    "to",
    "platform",
    "module",
    "interface",
    "method",
    "path",
    "status",
    "ocpi_status",
    "outcome",
    "latency_us",
    "attempts",
    "pid",
)


def encode_record(record: TraceRecord) -> dict[FieldT, EncodableT]:
    return {
        "time_ms": round(record.time * 1000),
        "kind": record.kind.value,
        "correlation_id": record.correlation_id,
        "request_id": record.request_id,
        "request_id_out": record.request_id_out,
        "from": "" if record.from_party is None else str(record.from_party),
        "to": "" if record.to_party is None else str(record.to_party),
        "platform": record.platform,
        "module": record.module,
        "interface": record.interface,
        "method": record.method,
        "path": strip_query_values(record.path),
        "status": "" if record.status is None else record.status,
        "ocpi_status": "" if record.ocpi_status is None else record.ocpi_status,
        "outcome": record.outcome,
        "latency_us": round(record.latency_ms * 1000),
        "attempts": record.attempts,
        "pid": record.pid,
    }


def decode_record(fields: Mapping[bytes, bytes]) -> TraceRecord:
    text = {k.decode(): v.decode() for k, v in fields.items()}
    return TraceRecord(
        time=int(text["time_ms"]) / 1000,
        kind=TraceKind(text["kind"]),
        correlation_id=text["correlation_id"],
        request_id=text["request_id"],
        request_id_out=text["request_id_out"],
        from_party=_party(text["from"]),
        to_party=_party(text["to"]),
        platform=text["platform"],
        module=text["module"],
        interface=text["interface"],
        method=text["method"],
        path=text["path"],
        status=_int_or_none(text["status"]),
        ocpi_status=_int_or_none(text["ocpi_status"]),
        outcome=text["outcome"],
        latency_ms=int(text["latency_us"]) / 1000,
        attempts=int(text["attempts"]),
        pid=int(text["pid"]),
    )


def _party(text: str) -> PartyKey | None:
    return PartyKey.parse(text) if text else None


def _int_or_none(text: str) -> int | None:
    return int(text) if text else None


@dataclass(frozen=True, slots=True)
class TrafficSummary:
    """A party's traffic (as sender or receiver) since a moment."""

    party: PartyKey
    since_ms: int
    total: int
    by_module: Mapping[str, int]
    by_outcome: Mapping[str, int]
    #: "2xx", "4xx", "5xx", … and "none" for messages without an HTTP answer.
    by_status_class: Mapping[str, int]
    errors: int
    #: The newest errors, newest first.
    recent_errors: tuple[TraceRecord, ...] = field(default=())
    #: True when the scan stopped at its bound before reaching ``since_ms``: the counts cover less time.
    truncated: bool = False


class TraceLog:
    """The shared trace stream of one registry."""

    def __init__(
        self,
        redis: Redis,
        keys: RegistryKeys,
        max_records: int = TRACE_MAX_RECORDS,
        max_age_seconds: float = TRACE_MAX_AGE_SECONDS,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.max_records = max_records
        self.max_age_seconds = max_age_seconds

    async def write(self, records: Sequence[TraceRecord], *, now: float | None = None) -> None:
        """Append records in one pipeline (one round trip): XADD each with MAXLEN ~, then XTRIM MINID ~."""
        if not records:
            return
        key = self.keys.trace()
        async with self.redis.pipeline(transaction=False) as pipe:
            for record in records:
                pipe.xadd(key, encode_record(record), maxlen=self.max_records, approximate=True)
            newest = max(r.time for r in records) if now is None else now
            pipe.xtrim(key, minid=max(0, int((newest - self.max_age_seconds) * 1000)), approximate=True)
            await pipe.execute()

    async def find(self, message_id: str, *, scan_limit: int = SCAN_LIMIT) -> list[TraceRecord]:
        """Every record whose correlation id, request id or outgoing request id is ``message_id``, oldest first."""
        return await self._matching({message_id}, scan_limit)

    async def journey(self, message_id: str, *, scan_limit: int = SCAN_LIMIT) -> list[TraceRecord]:
        """``find``, plus every record sharing a correlation id with those found: a request id leads to the whole
        journey (request, forward, answer, broadcast copies, relayed callbacks), oldest first."""
        found = await self._matching({message_id}, scan_limit)
        correlations = {r.correlation_id for r in found if r.correlation_id} - {message_id}
        if not correlations:
            return found
        return await self._matching({message_id, *correlations}, scan_limit)

    async def traffic(self, party: PartyKey, since_ms: int, *, scan_limit: int = SCAN_LIMIT) -> TrafficSummary:
        """Counts by module, outcome and status class of ``party``'s messages since ``since_ms``, and its recent
        errors."""
        wanted = str(party).encode()
        modules: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        classes: Counter[str] = Counter()
        errors: list[TraceRecord] = []
        error_count = 0
        total = 0
        seen = 0
        async for fields in self._scan(since_ms, scan_limit):
            seen += 1
            if fields.get(b"from") != wanted and fields.get(b"to") != wanted:
                continue
            record = decode_record(fields)
            if record.time * 1000 < since_ms:
                continue
            total += 1
            modules[record.module or "-"] += 1
            outcomes[record.outcome or "-"] += 1
            classes["none" if record.status is None else f"{record.status // 100}xx"] += 1
            if record.failed:
                error_count += 1
                if len(errors) < RECENT_ERRORS:
                    errors.append(record)
        return TrafficSummary(
            party=party,
            since_ms=since_ms,
            total=total,
            by_module=dict(modules.most_common()),
            by_outcome=dict(outcomes.most_common()),
            by_status_class=dict(sorted(classes.items())),
            errors=error_count,
            recent_errors=tuple(errors),
            truncated=seen >= scan_limit,
        )

    async def _matching(self, ids: set[str], scan_limit: int) -> list[TraceRecord]:
        wanted = {i.encode() for i in ids if i}
        found: list[TraceRecord] = []
        async for fields in self._scan(None, scan_limit):
            # Compare the raw bytes first: decoding every entry of a long scan would cost most of its time.
            if any(fields.get(name) in wanted for name in (b"correlation_id", b"request_id", b"request_id_out")):
                found.append(decode_record(fields))
        found.sort(key=lambda r: r.time)  # newest first from the scan; records of one batch may be out of order
        return found

    async def _scan(self, since_ms: int | None, scan_limit: int) -> AsyncIterator[Mapping[bytes, bytes]]:
        """Stream entries' fields, newest first, at most ``scan_limit`` of them."""
        upper = "+"
        lower = "-" if since_ms is None else str(since_ms)
        seen = 0
        while seen < scan_limit:
            count = min(READ_BATCH, scan_limit - seen)
            raw = await self.redis.xrevrange(self.keys.trace(), max=upper, min=lower, count=count)
            entries = stream_entries(raw)
            for _, fields in entries:
                yield fields
            seen += len(entries)
            if len(entries) < count:
                return
            upper = "(" + entries[-1][0]
