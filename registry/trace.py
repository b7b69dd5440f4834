"""Message tracking storage: one record per request, broadcast copy, relayed call, refusal, Hub Client Info push
and liveness check, kept in one Redis stream shared by every hub process, so ``ocpi-hub trace ID`` can follow a
message across all of them and ``ocpi-hub registry traffic`` can sum up a party's recent traffic.

Owns: ``TraceRecord`` and its codec, the stream's layout and bounds, and the bounded newest-first scans behind
``find``, ``journey`` and ``traffic``.
Must not: be written to from a request (hub/tracking.py batches records off the hot path), or hold a token, a
body or a query value: ``path`` is stored with its query values dropped (keys kept).

Layout. A record is one JSON line — the very line the hub logs for that message (hub/logs.py ``event``), so the
hot path encodes it once for both. A batch of up to ``LINES_PER_ENTRY`` lines is one stream entry (fields ``n``:
the count, ``r``: the lines joined by newlines): writing per record cost the hub ~30 µs of redis-py command
packing a request, a batch entry costs next to nothing per record. Bounds: entries older than ``max_age_seconds``
are trimmed (XTRIM MINID ~ on every write) and at most ``max_records / LINES_PER_ENTRY`` entries are kept (exact
MAXLEN: "~" trims whole stream nodes of 100 entries, which here would be 50,000 records over the bound), so
``max_records`` is an upper bound on what is kept — the age bound is what applies at low traffic.

Memory (``python -m benchmarks.tracking``: 100,000 of the hub's own access lines, ~575 bytes each with their three
UUIDs, on the wheel's Redis 6.2): about 580 bytes a record, 55 MB per 100,000; the default bound
(keys.TRACE_MAX_RECORDS, 250,000 records) is therefore at most about 140 MB of the registry's Redis.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final
from urllib.parse import parse_qsl

import orjson
from redis.asyncio import Redis

from registry.audit import stream_entries
from registry.keys import TRACE_MAX_AGE_SECONDS, TRACE_MAX_RECORDS, RegistryKeys
from routing.model import PartyKey

#: Stream entries read per XREVRANGE call.
READ_BATCH: Final = 20
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


#: Lines in one stream entry at most.
LINES_PER_ENTRY: Final = 500


def encode_record(record: TraceRecord) -> bytes:
    """A record as the JSON line the hub logs for it (hub/proxy.py builds the same keys)."""
    return orjson.dumps(record_json(record))


def record_json(record: TraceRecord) -> dict[str, Any]:
    """A record's JSON object: the keys and values of the hub's log line, as ``ocpi-hub trace --json``, ``registry
    traffic --json`` and the operator's page show it too."""
    return {
        "time": datetime.fromtimestamp(record.time, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "kind": record.kind.value,
        "correlation_id": record.correlation_id,
        "request_id": record.request_id,
        "request_id_out": record.request_id_out or None,
        "from": None if record.from_party is None else str(record.from_party),
        "to": None if record.to_party is None else str(record.to_party),
        "platform": record.platform or None,
        "module": record.module,
        "interface": record.interface,
        "method": record.method,
        "path": strip_query_values(record.path),
        "status": record.status,
        "ocpi_status": record.ocpi_status,
        "outcome": record.outcome,
        "latency_ms": record.latency_ms,
        "attempts": record.attempts,
        "pid": record.pid,
    }


def decode_record(line: bytes) -> TraceRecord | None:
    """A stored line → TraceRecord; None for a line that is not a trace record."""
    try:
        data = orjson.loads(line)
        moment = datetime.fromisoformat(data["time"]).timestamp()
        kind = TraceKind(data.get("kind") or "request")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return TraceRecord(
        time=moment,
        kind=kind,
        correlation_id=data.get("correlation_id") or "",
        request_id=data.get("request_id") or "",
        request_id_out=data.get("request_id_out") or "",
        from_party=_party(data.get("from")),
        to_party=_party(data.get("to")),
        platform=data.get("platform") or "",
        module=data.get("module") or "",
        interface=data.get("interface") or "",
        method=data.get("method") or "",
        path=data.get("path") or "",
        status=data.get("status") or None,  # 0: a broadcast copy that got no HTTP answer
        ocpi_status=data.get("ocpi_status"),
        outcome=data.get("outcome") or "",
        latency_ms=float(data.get("latency_ms") or 0.0),
        attempts=int(data.get("attempts") or 1),
        pid=int(data.get("pid") or 0),
    )


def _party(text: object) -> PartyKey | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return PartyKey.parse(text)
    except ValueError:
        return None


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

    async def write(self, records: Sequence[TraceRecord | bytes], *, now: float | None = None) -> None:
        """Append records (lines as the hub logged them, or records to encode) in one pipeline: an entry per
        ``LINES_PER_ENTRY`` lines with an exact MAXLEN, then XTRIM MINID ~ by age."""
        if not records:
            return
        lines = [r if isinstance(r, bytes) else encode_record(r) for r in records]
        key = self.keys.trace()
        entries = max(1, self.max_records // LINES_PER_ENTRY)
        async with self.redis.pipeline(transaction=False) as pipe:
            for start in range(0, len(lines), LINES_PER_ENTRY):
                chunk = lines[start : start + LINES_PER_ENTRY]
                pipe.xadd(key, {"n": len(chunk), "r": b"\n".join(chunk)}, maxlen=entries, approximate=False)
            newest = time.time() if now is None else now
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
        async for line in self.scan(since_ms, scan_limit):
            seen += 1
            if wanted not in line:  # bytes first: decoding every line of a long scan would cost most of its time
                continue
            record = decode_record(line)
            if record is None or record.time * 1000 < since_ms or party not in (record.from_party, record.to_party):
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
        async for line in self.scan(None, scan_limit):
            # Compare the raw bytes first: decoding every line of a long scan would cost most of its time.
            if any(w in line for w in wanted):
                record = decode_record(line)
                if record is not None and ids & {record.correlation_id, record.request_id, record.request_id_out}:
                    found.append(record)
        found.sort(key=lambda r: r.time)  # newest first from the scan; records of one batch may be out of order
        return found

    async def scan(self, since_ms: int | None, scan_limit: int) -> AsyncIterator[bytes]:
        """Stored lines (JSON, as the hub logged them), newest entry first, at most ``scan_limit`` of them; with
        ``since_ms``, only entries written since then (an entry is written at or after each of its records)."""
        upper = "+"
        lower = "-" if since_ms is None else str(since_ms)
        seen = 0
        while seen < scan_limit:
            raw = await self.redis.xrevrange(self.keys.trace(), max=upper, min=lower, count=READ_BATCH)
            entries = stream_entries(raw)
            for _, fields in entries:
                lines = fields.get(b"r", b"").split(b"\n")
                for line in reversed(lines):
                    if line:
                        if seen >= scan_limit:
                            return
                        seen += 1
                        yield line
            if len(entries) < READ_BATCH:
                return
            upper = "(" + entries[-1][0]
