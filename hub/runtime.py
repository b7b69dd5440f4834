"""The per-process objects every handler shares, built once in the lifespan.

Owns: ``Runtime`` (settings, registry store, routing snapshot, outbound client, metrics, tasks) and request-id
minting. Must not: hold request state.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

from config.settings import Settings
from hub.forward import Outbound
from hub.metrics import HubMetrics
from hub.tasks import Tasks
from registry.snapshot import SnapshotHolder
from registry.store import PartyStore
from routing.model import PartyKey


def new_request_id() -> bytes:
    """A fresh UUID4 for X-Request-ID / X-Correlation-ID (transport_and_format §4.2 advises UUIDs)."""
    return str(uuid.UUID(bytes=os.urandom(16), version=4)).encode("ascii")


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
