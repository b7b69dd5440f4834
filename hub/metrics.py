"""Prometheus metrics of a hub process (prefix ``ocpihub_``), with bounded label sets and pre-bound children.

Owns: every metric's name, help, labels and buckets; keeping the gauges current (``refresh``, every second from
the background loop and at each scrape, so with several workers every worker's own figures are fresh, not only
the scraped one's); the /metrics text with every worker's figures combined (prometheus-client multiprocess mode,
dead workers' gauges dropped); process metrics (``process_*``) in both modes; no ``_created`` series.
Nothing registers at import time (a test passes its own registry).
Must not: label with party ids, URLs or request ids.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import resource
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

from hub.http.client import Outbound
from hub.http.server import REFUSAL_REASONS, REFUSALS
from registry.snapshot import SnapshotHolder
from routing.model import FUNCTIONAL_MODULES, ConnectionStatus, InterfaceRole
from routing.outcome import DELIVERY_OUTCOMES, REQUEST_OUTCOMES, Outcome

MODULE_LABELS: Final = (*(m.value for m in FUNCTIONAL_MODULES), "relay")
ROLE_LABELS: Final = (InterfaceRole.SENDER.value, InterfaceRole.RECEIVER.value, "none")
OUTCOMES: Final = tuple(o.value for o in REQUEST_OUTCOMES)
#: Modules whose broadcast pushes the hub keeps (GET All via Hub), and what applying one can come to.
STORE_MODULES: Final = ("locations", "tariffs", "tokens")
STORE_OUTCOMES: Final = ("stored", "stale", "invalid", "unknown", "deleted", "error")
#: Background tasks that restart when they fail (hub/tasks.py ``supervise``).
TASKS: Final = ("snapshot", "scheduler", "seen-flush", "tracker", "owner-index")
#: Tuned to the forwarding timeouts: sub-millisecond hub overhead up to the 10 s default.
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
_PID_IN_NAME: Final = re.compile(r"_(\d+)\.db$")


def build_version() -> str:
    try:
        return version("ocpi-hub")
    except PackageNotFoundError:
        return "unknown"


class HubMetrics:
    """All metrics of one process, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # A _created series per labelled child doubles what a scrape carries and nobody reads it.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream
        self.registry = registry
        self.multiprocess = _MULTIPROC_ENV in os.environ
        requests = Counter(
            "ocpihub_requests_total",
            "Functional-module requests by module, interface role and outcome.",
            ["module", "interface", "outcome"],
            registry=registry,
        )
        self.requests: dict[tuple[str, str, Outcome], Counter] = {
            (m, r, o): requests.labels(m, r, o) for m in MODULE_LABELS for r in ROLE_LABELS for o in REQUEST_OUTCOMES
        }
        latency = Histogram(
            "ocpihub_forward_duration_seconds",
            "Time from receiving a request to the receiver's response headers.",
            ["module"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.latency = {m: latency.labels(m) for m in MODULE_LABELS}
        deliveries = Counter(
            "ocpihub_broadcast_deliveries_total",
            "Broadcast copies by module and outcome.",
            ["module", "outcome"],
            registry=registry,
        )
        self.deliveries: dict[tuple[str, Outcome], Counter] = {
            (m, o): deliveries.labels(m, o) for m in MODULE_LABELS for o in DELIVERY_OUTCOMES
        }
        broadcasts = Counter("ocpihub_broadcasts_total", "Broadcast pushes accepted.", ["module"], registry=registry)
        self.broadcasts = {m: broadcasts.labels(m) for m in MODULE_LABELS}
        store = Counter(
            "ocpihub_store_pushes_total",
            "Broadcast pushes applied to the hub's store (GET All via Hub) by module and result.",
            ["module", "outcome"],
            registry=registry,
        )
        self.store_pushes = {(m, o): store.labels(m, o) for m in STORE_MODULES for o in STORE_OUTCOMES}
        pushes = Counter(
            "ocpihub_clientinfo_pushes_total", "Hub Client Info PUTs by outcome.", ["outcome"], registry=registry
        )
        self.pushes = {o: pushes.labels(o) for o in ("ok", "error")}
        checks = Counter(
            "ocpihub_liveness_checks_total", "Still-alive GETs of versions endpoints.", ["outcome"], registry=registry
        )
        self.checks = {o: checks.labels(o) for o in ("ok", "error")}
        restarts = Counter(
            "ocpihub_background_task_restarts_total",
            "Background tasks restarted after a failure.",
            ["task"],
            registry=registry,
        )
        self.restarts = {t: restarts.labels(t) for t in TASKS}
        self.skipped_records = Counter(
            "ocpihub_registry_records_skipped_total",
            "Registry records left out of the routing snapshot because they could not be read.",
            registry=registry,
        )
        self.registry_up = Gauge(
            "ocpihub_registry_up",
            "1 while the registry (Redis) answers; routing goes on from the snapshot while it does not.",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.last_sync = Gauge(
            "ocpihub_registry_last_sync_timestamp_seconds",
            "When this process last confirmed its routing snapshot is current (moves with every poll).",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.snapshot_version = Gauge(
            "ocpihub_registry_snapshot_version",
            "Registry version of the routing snapshot.",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.leader = Gauge(
            "ocpihub_scheduler_leader",
            "1 in the process that holds the scheduler lease (Hub Client Info pushes, liveness checks).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        parties = Gauge(
            "ocpihub_parties",
            "Parties by ConnectionStatus (as seen in the snapshot).",
            ["status"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.parties = {s: parties.labels(s.value) for s in ConnectionStatus}
        self.connections = Gauge(
            "ocpihub_outbound_connections_in_use",
            "Outbound connections to parties in use.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        Gauge(
            "ocpihub_build_info",
            "The hub's version and Python version (always 1).",
            ["version", "python_version"],
            registry=registry,
            multiprocess_mode="livemax",
        ).labels(build_version(), platform.python_version()).set(1)
        self.trace_dropped = Counter(
            "ocpihub_trace_records_dropped_total",
            "Message-tracking records not kept (too many waiting, or the registry was unreachable).",
            registry=registry,
        )
        self.owner_facts_dropped = Counter(
            "ocpihub_owner_facts_dropped_total",
            "Open Routing owner-index facts not written (too many waiting, or the store was unreachable).",
            registry=registry,
        )
        self.http_refusals = Counter(
            "ocpihub_http_refusals_total",
            "Connections the HTTP layer refused before any request reached the hub: head too large (431), "
            "malformed or smuggling-shaped (400), head too slow (408), too many connections (503), idle.",
            ["reason"],
            registry=registry,
        )
        for reason in REFUSAL_REASONS.values():
            self.http_refusals.labels(reason)
        self._refusals_seen: dict[str, int] = {}
        self._skipped_seen = 0
        self._dropped_seen = 0
        self._facts_dropped_seen = 0
        self._process: _ProcessGauges | None = None
        if self.multiprocess:
            self._process = _ProcessGauges(registry)
        else:
            ProcessCollector(registry=registry)

    def restarts_of(self, task: str) -> None:
        """Count one restart of a supervised background task (hub/tasks.py)."""
        counter = self.restarts.get(task)
        if counter is not None:
            counter.inc()

    def refresh(
        self,
        holder: SnapshotHolder,
        outbound: Outbound,
        leader: bool,
        trace_dropped: int = 0,
        owner_facts_dropped: int = 0,
    ) -> None:
        """Set this process's gauges from the snapshot, the pools and the scheduler (cheap: called every second)."""
        table = holder.table
        self.registry_up.set(1 if holder.reachable else 0)
        self.last_sync.set(holder.synced_at)
        self.snapshot_version.set(table.version)
        self.leader.set(1 if leader else 0)
        counts = dict.fromkeys(ConnectionStatus, 0)
        for platform_ in table.platforms.values():
            counts[platform_.status] += len(platform_.roles)
        for status, gauge in self.parties.items():
            gauge.set(counts[status])
        self.connections.set(outbound.connections_in_use)
        if holder.skipped_records > self._skipped_seen:
            self.skipped_records.inc(holder.skipped_records - self._skipped_seen)
            self._skipped_seen = holder.skipped_records
        if trace_dropped > self._dropped_seen:
            self.trace_dropped.inc(trace_dropped - self._dropped_seen)
            self._dropped_seen = trace_dropped
        if owner_facts_dropped > self._facts_dropped_seen:
            self.owner_facts_dropped.inc(owner_facts_dropped - self._facts_dropped_seen)
            self._facts_dropped_seen = owner_facts_dropped
        for reason, count in REFUSALS.items():
            seen = self._refusals_seen.get(reason, 0)
            if count > seen:
                self.http_refusals.labels(reason).inc(count - seen)
                self._refusals_seen[reason] = count
        if self._process is not None:
            self._process.refresh()


class _ProcessGauges:
    """``process_*`` for multiprocess mode, where prometheus-client's ProcessCollector cannot add workers up: each
    worker writes its own figures as gauges that the scrape sums (start time: the earliest)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.cpu = Gauge(
            "process_cpu_seconds_total",
            "CPU seconds of the hub's workers.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.rss = Gauge(
            "process_resident_memory_bytes",
            "Resident memory of the hub's workers.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.fds = Gauge(
            "process_open_fds",
            "Open file descriptors of the hub's workers.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        start = Gauge(
            "process_start_time_seconds",
            "Start time of the oldest worker (epoch seconds).",
            registry=registry,
            multiprocess_mode="livemin",
        )
        start.set(_STARTED_AT)

    def refresh(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu.set(usage.ru_utime + usage.ru_stime)
        self.rss.set(_rss_bytes())
        with contextlib.suppress(OSError):  # no /proc: the gauge keeps its last value
            self.fds.set(len(os.listdir("/proc/self/fd")))


#: When this worker started (the module is imported at start-up).
_STARTED_AT: Final = time.time()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _forget_dead_workers(directory: str) -> None:
    """Drop the live gauges of workers that are gone (uvicorn replaces a dead worker without telling us)."""
    pids = {int(m.group(1)) for m in map(_PID_IN_NAME.search, os.listdir(directory)) if m}
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]  # unannotated upstream
        except PermissionError:
            pass  # alive, someone else's


def exposition(
    metrics: HubMetrics,
    holder: SnapshotHolder,
    outbound: Outbound,
    leader: bool,
    trace_dropped: int = 0,
    owner_facts_dropped: int = 0,
) -> tuple[bytes, str]:
    """The /metrics body; with several workers (PROMETHEUS_MULTIPROC_DIR), every worker's figures combined."""
    metrics.refresh(holder, outbound, leader, trace_dropped, owner_facts_dropped)
    registry = metrics.registry
    directory = os.environ.get(_MULTIPROC_ENV)
    if directory is not None and Path(directory).is_dir():
        _forget_dead_workers(directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated upstream
    return generate_latest(registry), CONTENT_TYPE_LATEST
