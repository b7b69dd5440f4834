"""The per-process objects every handler shares, built once in the lifespan.

Owns: ``Runtime`` (settings, registry store, routing snapshot, outbound client, metrics, tasks) and request-id
minting. Must not: hold request state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from config.settings import Settings
from hub.forward import Outbound
from hub.metrics import HubMetrics
from hub.tasks import Tasks
from registry.snapshot import SnapshotHolder
from registry.store import PartyStore
from routing.model import PartyKey


def new_request_id() -> bytes:
    """A fresh UUID4 for X-Request-ID / X-Correlation-ID (transport_and_format §4.2 advises UUIDs).

    Formatted by hand: ``uuid.uuid4()`` costs several times more, and this runs on every forwarded request.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex().encode("ascii")
    return b"-".join((text[:8], text[8:12], text[12:16], text[16:20], text[20:]))


@dataclass(slots=True)
class Runtime:
    settings: Settings
    store: PartyStore
    holder: SnapshotHolder
    outbound: Outbound
    metrics: HubMetrics
    tasks: Tasks
    hub: PartyKey
    base_url: str
    #: platform id → epoch seconds of its last request; flushed to Redis by the liveness task.
    seen: dict[str, float] = field(default_factory=dict)
