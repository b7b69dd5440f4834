"""Every Redis key and channel the hub uses, spelled in one place, with every TTL named.

All keys share one hash tag (``{prefix}``) so multi-key transactions also work on Redis Cluster.
Must not: talk to Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Stream entries kept for ClientInfo pushes; a holder further behind skips the trimmed ones (parties resync by GET).
EVENTS_MAXLEN: Final = 10_000
#: How long audit events are kept (trimmed by age with MINID on every write); PartyStore takes another value.
AUDIT_RETENTION_SECONDS: Final = 365 * 86_400
#: Trace records kept at most (exact MAXLEN) and for at most this long (MINID ~), whichever trims first; ~580 bytes
#: a record (registry/trace.py, benchmarks/tracking.py), so the count bound is about 140 MB of Redis.
TRACE_MAX_RECORDS: Final = 250_000
TRACE_MAX_AGE_SECONDS: Final = 7 * 86_400


@dataclass(frozen=True, slots=True)
class RegistryKeys:
    """Key builder for one registry (one prefix)."""

    prefix: str = "ocpihub:"

    @property
    def _base(self) -> str:
        return "{" + self.prefix.rstrip(":") + "}:"

    def platforms(self) -> str:
        """HASH platform id → platform record (JSON)."""
        return f"{self._base}platforms"

    def parties(self) -> str:
        """HASH ``CC:PID`` → platform id: who owns a party (uniqueness, CLI lookups)."""
        return f"{self._base}parties"

    def tokens(self) -> str:
        """HASH SHA-256 hex of an accepted token → ``platform_id|A`` or ``platform_id|C``."""
        return f"{self._base}tokens"

    def version(self) -> str:
        """INT bumped by every write; snapshots compare it."""
        return f"{self._base}version"

    def changes(self) -> str:
        """Pub/sub channel announcing a new version."""
        return f"{self._base}changes"

    def clientinfo(self) -> str:
        """HASH ``CC:PID:ROLE`` → ClientInfo JSON (hubclientinfo §15.4.1); entries are never deleted."""
        return f"{self._base}clientinfo"

    def events(self) -> str:
        """STREAM of ClientInfo changes still to be pushed."""
        return f"{self._base}events"

    def events_cursor(self) -> str:
        """STRING: id of the last stream entry whose pushes are done."""
        return f"{self._base}events:cursor"

    def relay(self, relay_id: str) -> str:
        """STRING (with TTL): a relay id handed out by release 0.1 → the URL it stands for (read only, until
        those expire; relay URLs are signed now, see ``relay_keys``)."""
        return f"{self._base}relay:{relay_id}"

    def registration_failures(self, digest_hex: str) -> str:
        """INT (with TTL): failed registrations with one token A (its digest) in the current window."""
        return f"{self._base}regfail:{digest_hex}"

    def relay_keys(self) -> str:
        """HASH ``current`` → key id, ``k<id>`` → secret (hex): the keys relay URLs are signed with (the current
        one and the one before it, so a rotation does not break URLs in flight)."""
        return f"{self._base}relaykeys"

    def public_url(self) -> str:
        """STRING: the public URL a running hub recorded (the CLI prints versions URLs from it)."""
        return f"{self._base}public_url"

    def last_seen(self) -> str:
        """HASH platform id → epoch seconds of the last request from it (liveness)."""
        return f"{self._base}lastseen"

    def audit(self) -> str:
        """STREAM of registry changes (registry/audit.py): who changed what, before → after, never secrets."""
        return f"{self._base}audit"

    def trace(self) -> str:
        """STREAM of message-tracking records (registry/trace.py), bounded by count and by age."""
        return f"{self._base}trace"

    def lease(self) -> str:
        """STRING (with TTL): the id of the hub process running the scheduler."""
        return f"{self._base}lease:scheduler"

    # -- broadcast object store and owner index (registry/objects.py, registry/owners.py)

    def objects(self, module: str) -> str:
        """HASH member (``CC:PID:id``; tokens ``CC:PID:TYPE:uid``) → the stored object's JSON bytes."""
        return f"{self._base}obj:{module}"

    def object_sequence(self, module: str) -> str:
        """ZSET member → sequence number given when first stored (GET All order and keyset cursor)."""
        return f"{self._base}obj:{module}:seq"

    def object_updated(self, module: str) -> str:
        """ZSET member → the object's ``last_updated`` in epoch microseconds (staleness, date filters)."""
        return f"{self._base}obj:{module}:lu"

    def object_counter(self, module: str) -> str:
        """INT: the last sequence number given in a module (INCR)."""
        return f"{self._base}obj:{module}:next"

    def owner_index(self, kind: str) -> str:
        """HASH key → comma-separated ``CC:PID`` owners, kept until the owner is dropped (tokens, locations)."""
        return f"{self._base}own:{kind}"

    def owner_bucket(self, kind: str, day: int) -> str:
        """HASH key → owners of facts forgotten on UTC day ``day`` (epoch days); EXPIREAT the end of that day."""
        return f"{self._base}own:{kind}:{day}"
