"""The per-process objects every handler shares, built once in the lifespan.

Owns: ``Runtime`` (settings, registry store, routing snapshot, outbound client, metrics, tasks), opening and
closing them (``open_runtime``). Must not: hold request state or start background work
(hub/app.py starts it through ``Runtime.tasks``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from config.settings import Settings
from hub.holdings import Holdings, OwnerLearner
from hub.http.client import Outbound
from hub.http.policy import NetworkPolicy
from hub.metrics import HubMetrics
from hub.tasks import Tasks
from hub.tracking import Tracker
from registry.connection import open_redis
from registry.keys import RegistryKeys
from registry.objects import ObjectStore
from registry.owners import OwnerIndex
from registry.snapshot import SnapshotHolder
from registry.store import PartyStore
from registry.trace import TraceLog
from routing.model import PartyKey


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
    holdings: Holdings
    learner: OwnerLearner
    #: Message tracking (None when ``trace_max_records`` is 0).
    tracker: Tracker | None
    #: platform id → epoch seconds of its last request; flushed to Redis by the liveness task.
    seen: dict[str, float] = field(default_factory=dict)
    #: Whether this process holds the scheduler lease (Hub Client Info pushes, liveness checks).
    leader: bool = False


@asynccontextmanager
async def open_runtime(settings: Settings, metrics_registry: CollectorRegistry) -> AsyncIterator[Runtime]:
    """The per-process objects, open for the life of the block (Redis, the outbound pools)."""
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(open_redis(settings.redis_url, settings.data_dir))
        keys = RegistryKeys(settings.key_prefix)
        store = PartyStore(redis, keys, retention_seconds=settings.audit_retention)
        tracker = None
        if settings.trace_max_records:
            tracker = Tracker(TraceLog(redis, keys, settings.trace_max_records, settings.trace_max_age))
        hub = PartyKey(settings.country_code, settings.party_id)
        outbound = Outbound(
            max_connections=settings.max_connections,
            per_host=settings.max_connections_per_receiver,
            connect_timeout=settings.connect_timeout,
            policy=NetworkPolicy.from_cidrs(settings.allow_party_networks),
            max_pending=settings.max_pending_per_receiver,
            max_pending_per_sender=settings.max_pending_per_sender,
        )
        stack.push_async_callback(outbound.close)
        # The store of broadcast objects and the owner index share one Redis (the registry's, or their own).
        objects_redis = redis
        if settings.store_redis_url:
            objects_redis = await stack.enter_async_context(open_redis(settings.store_redis_url, settings.data_dir))
        owners = OwnerIndex(objects_redis, keys)
        holdings = Holdings(ObjectStore(objects_redis, keys), owners, settings.base_url, settings.get_all_limit)
        yield Runtime(
            settings=settings,
            store=store,
            holder=SnapshotHolder(store, hub, settings.snapshot_poll_interval),
            outbound=outbound,
            metrics=HubMetrics(metrics_registry),
            tasks=Tasks(),
            hub=hub,
            base_url=settings.base_url,
            holdings=holdings,
            learner=OwnerLearner(owners),
            tracker=tracker,
        )
