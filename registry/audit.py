"""The audit trail of registry changes: who changed what and when, before → after, never a secret.

Owns: ``Actor`` (who made a change), ``AuditEvent`` and its stream codec, ``diff()`` of two platform records over
the fields an operator may see, ``stage()`` — the XADD that registry/store.py queues inside the MULTI/EXEC of the
change itself, so a change and its event are stored together or not at all — the JSON log line written once the
transaction has been applied (logger ``ocpihub.audit``), and reading the trail back (``AuditLog.history``).
Must not: decide what changes (registry/store.py does), or carry a token, a token digest or token B: ``diff``
reads an allow-list of fields, so a secret field added to PlatformRecord later stays out unless listed here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias, cast

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from registry.codec import PlatformRecord, encode_endpoint, encode_rate_limit
from registry.keys import RegistryKeys
from routing.model import PartyKey

log = logging.getLogger("ocpihub.audit")

JsonValue: TypeAlias = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None

ActorKind = Literal["cli", "platform", "hub"]
ACTOR_KINDS: Final[tuple[ActorKind, ...]] = ("cli", "platform", "hub")

#: Every action the trail records (the store's write methods, one each; ``liveness`` only when a status changes).
Action = Literal[
    "declare",
    "register",
    "update",
    "unregister",
    "suspend",
    "resume",
    "remove",
    "liveness",
    "discard",
    "endpoint",
    "limit",
    "relay-key",
]

#: Stream entries read per XREVRANGE call when the trail is read back.
READ_BATCH: Final = 1_000
#: The most events one ``history`` call returns (the newest ones).
HISTORY_LIMIT: Final = 10_000


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change: an operator at the CLI, a platform through the credentials module, or the hub itself."""

    kind: ActorKind
    #: cli: the OS user name.
    user: str = ""
    #: cli: the host the command ran on.
    host: str = ""
    #: platform: its platform id.
    platform: str = ""
    #: platform: its parties, ``CC:PID`` comma-separated.
    party: str = ""

    @classmethod
    def cli(cls, user: str, host: str) -> Actor:
        return cls("cli", user=user, host=host)

    @classmethod
    def of_platform(cls, platform_id: str, parties: Iterable[PartyKey]) -> Actor:
        return cls("platform", platform=platform_id, party=",".join(sorted({str(p) for p in parties})))

    def __str__(self) -> str:
        if self.kind == "cli":
            return f"cli {self.user}@{self.host}"
        if self.kind == "platform":
            return f"platform {self.platform} ({self.party})"
        return "hub"

    def to_json(self) -> dict[str, str]:
        data = {"kind": self.kind, "user": self.user, "host": self.host, "platform": self.platform, "party": self.party}
        return {k: v for k, v in data.items() if v}


#: The scheduler and start-up work of hub processes (liveness, the first relay signing key).
HUB: Final = Actor("hub")


@dataclass(frozen=True, slots=True)
class Change:
    """One field of a record, before → after (``None``: the record did not exist on that side)."""

    field: str
    before: JsonValue
    after: JsonValue


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One registry change."""

    #: ISO 8601, UTC, milliseconds.
    time: str
    actor: Actor
    action: Action
    #: The platform changed; "" for changes of the hub's own (relay signing keys).
    platform: str
    #: Its parties, ``CC:PID:ROLE``.
    parties: tuple[str, ...]
    changes: tuple[Change, ...]
    #: The stream entry id once stored ("" before).
    id: str = ""

    def names(self, party: PartyKey) -> bool:
        """True when ``party`` is one of this event's parties (any role)."""
        wanted = str(party)
        return any(p.rpartition(":")[0] == wanted for p in self.parties)

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "time": self.time,
            "actor": cast(JsonValue, self.actor.to_json()),
            "action": self.action,
            "platform": self.platform,
            "parties": list(self.parties),
            "changes": [{"field": c.field, "before": c.before, "after": c.after} for c in self.changes],
        }


def _view(record: PlatformRecord) -> dict[str, JsonValue]:
    """The fields of a record an operator may see in the trail (an allow-list: never token_b or digests)."""
    return {
        "name": record.name,
        "parties": [str(r) for r in record.roles],
        "status": record.status.value,
        "registered": record.registered,
        "versions_url": record.versions_url,
        "version": record.version,
        "token_form": record.token_form.value,
        "endpoints": [cast(JsonValue, encode_endpoint(e)) for e in record.endpoints],
        "endpoint_overrides": [cast(JsonValue, encode_endpoint(e)) for e in record.endpoint_overrides],
        "rate_limit": None if record.rate_limit is None else cast(JsonValue, encode_rate_limit(record.rate_limit)),
        "business_details": cast(JsonValue, orjson.loads(orjson.dumps(record.business_details))),
    }


def _empty(value: JsonValue) -> bool:
    return value is None or value == "" or value == [] or value == {}


def diff(before: PlatformRecord | None, after: PlatformRecord | None) -> tuple[Change, ...]:
    """The visible fields that differ; a side that does not exist reads as None (fields empty on both omitted)."""
    old = {} if before is None else _view(before)
    new = {} if after is None else _view(after)
    changes = []
    for name in old or new:
        a, b = old.get(name), new.get(name)
        if a != b and not (_empty(a) and _empty(b)):
            changes.append(Change(name, a, b))
    return tuple(changes)


def platform_event(
    time: str, actor: Actor, action: Action, before: PlatformRecord | None, after: PlatformRecord | None
) -> AuditEvent:
    """The event of one platform's change."""
    record = after if after is not None else before
    if record is None:
        raise ValueError("an audit event needs a record before or after the change")
    return AuditEvent(
        time=time,
        actor=actor,
        action=action,
        platform=record.id,
        parties=tuple(str(r) for r in record.roles),
        changes=diff(before, after),
    )


def encode_event(event: AuditEvent) -> bytes:
    return orjson.dumps(event.to_json())


def decode_event(raw: bytes | str, entry_id: str = "") -> AuditEvent:
    data = orjson.loads(raw)
    actor = data["actor"]
    return AuditEvent(
        time=data["time"],
        actor=Actor(
            kind=actor["kind"],
            user=actor.get("user", ""),
            host=actor.get("host", ""),
            platform=actor.get("platform", ""),
            party=actor.get("party", ""),
        ),
        action=data["action"],
        platform=data["platform"],
        parties=tuple(data["parties"]),
        changes=tuple(Change(c["field"], c["before"], c["after"]) for c in data["changes"]),
        id=entry_id,
    )


def stage(pipe: Pipeline, keys: RegistryKeys, event: AuditEvent, *, now_ms: int, retention_seconds: float) -> None:
    """Queue the event's XADD in a MULTI/EXEC, trimming entries older than the retention (MINID ~, cheap)."""
    oldest = max(0, now_ms - int(retention_seconds * 1000))
    pipe.xadd(keys.audit(), {"e": encode_event(event)}, minid=oldest, approximate=True)


def log_event(event: AuditEvent) -> None:
    """The event as one JSON log line (after the transaction was applied; the formatter spreads ``fields``)."""
    fields = event.to_json()
    del fields["time"]  # the line's own time is the same instant
    log.info("registry change", extra={"fields": {"event": "audit", **fields}})


class AuditLog:
    """Reads the trail back."""

    def __init__(self, redis: Redis, keys: RegistryKeys) -> None:
        self.redis = redis
        self.keys = keys

    async def history(
        self, party: PartyKey | None = None, since_ms: int | None = None, limit: int = HISTORY_LIMIT
    ) -> list[AuditEvent]:
        """Events (of ``party``'s platforms, or all) since ``since_ms`` (epoch ms), oldest first, the newest
        ``limit`` of them."""
        found: list[AuditEvent] = []
        upper = "+"
        lower = "-" if since_ms is None else str(since_ms)
        while len(found) < limit:
            raw = await self.redis.xrevrange(self.keys.audit(), max=upper, min=lower, count=READ_BATCH)
            entries = stream_entries(raw)
            for entry_id, fields in entries:
                event = decode_event(fields[b"e"], entry_id)
                if party is None or event.names(party):
                    found.append(event)
                    if len(found) >= limit:
                        break
            if len(raw or ()) < READ_BATCH or not entries:
                break
            upper = "(" + entries[-1][0]
        found.reverse()
        return found


def stream_entries(raw: object) -> list[tuple[str, Mapping[bytes, bytes]]]:
    """XRANGE/XREVRANGE replies as (entry id, fields); redis-py types every part as optional."""
    entries: list[tuple[str, Mapping[bytes, bytes]]] = []
    for entry_id, fields in cast(Sequence[tuple[bytes | str | None, Mapping[bytes, bytes] | None]], raw or ()):
        if entry_id is not None and fields:
            entries.append((_text(entry_id), fields))
    return entries


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
