"""Prometheus metrics of a hub process (prefix ``ocpihub_``), with bounded label sets and pre-bound children.

Owns: every metric's name, help, labels and buckets; nothing registers at import time (a test passes its own
registry). With several workers the server sets PROMETHEUS_MULTIPROC_DIR and figures add up across them.
Must not: label with party ids, URLs or request ids.
"""

from __future__ import annotations

import os
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from hub.http.client import Outbound
from registry.snapshot import SnapshotHolder
from routing.model import FUNCTIONAL_MODULES, ConnectionStatus, InterfaceRole

#: What happened to a request the hub routed (or refused to).
OUTCOMES: Final = (
    "ok",
    "client_error",
    "server_error",
    "unknown_receiver",
    "timeout",
    "unreachable",
    "refused",
)
BROADCAST_OUTCOMES: Final = ("ok", "error", "timeout", "unreachable")
MODULE_LABELS: Final = (*(m.value for m in FUNCTIONAL_MODULES), "relay")
ROLE_LABELS: Final = (InterfaceRole.SENDER.value, InterfaceRole.RECEIVER.value, "none")
#: Tuned to the forwarding timeouts: sub-millisecond hub overhead up to the 10 s default.
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class HubMetrics:
    """All metrics of one process, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        requests = Counter(
            "ocpihub_requests_total",
            "Functional-module requests by module, interface role and outcome.",
            ["module", "interface", "outcome"],
            registry=registry,
        )
        self.requests = {
            (m, r, o): requests.labels(m, r, o) for m in MODULE_LABELS for r in ROLE_LABELS for o in OUTCOMES
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
        self.deliveries = {(m, o): deliveries.labels(m, o) for m in MODULE_LABELS for o in BROADCAST_OUTCOMES}
        self.broadcasts = Counter(
            "ocpihub_broadcasts_total", "Broadcast pushes accepted.", ["module"], registry=registry
        )
        pushes = Counter(
            "ocpihub_clientinfo_pushes_total", "Hub Client Info PUTs by outcome.", ["outcome"], registry=registry
        )
        self.pushes = {o: pushes.labels(o) for o in ("ok", "error")}
        checks = Counter(
            "ocpihub_liveness_checks_total", "Still-alive GETs of versions endpoints.", ["outcome"], registry=registry
        )
        self.checks = {o: checks.labels(o) for o in ("ok", "error")}
        self.snapshot_version = Gauge(
            "ocpihub_registry_snapshot_version",
            "Registry version of this process's routing snapshot.",
            registry=registry,
            multiprocess_mode="max",
        )
        self.snapshot_loaded = Gauge(
            "ocpihub_registry_snapshot_loaded_timestamp_seconds",
            "When the routing snapshot was last loaded.",
            registry=registry,
            multiprocess_mode="max",
        )
        parties = Gauge(
            "ocpihub_parties",
            "Parties by ConnectionStatus (as seen in the snapshot).",
            ["status"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.parties = {s: parties.labels(s.value) for s in ConnectionStatus}
        self.connections = Gauge(
            "ocpihub_outbound_connections_in_use",
            "Outbound connections to parties in use.",
            registry=registry,
            multiprocess_mode="livesum",
        )


def exposition(metrics: HubMetrics, holder: SnapshotHolder, outbound: Outbound) -> tuple[bytes, str]:
    """The /metrics body: gauges read from the snapshot and pool at scrape time, then the text format.

    With PROMETHEUS_MULTIPROC_DIR set (several workers), every worker's files are summed.
    """
    table = holder.table
    metrics.snapshot_version.set(table.version)
    metrics.snapshot_loaded.set(holder.loaded_at)
    counts = dict.fromkeys(ConnectionStatus, 0)
    for platform in table.platforms.values():
        counts[platform.status] += len(platform.roles)
    for status, gauge in metrics.parties.items():
        gauge.set(counts[status])
    metrics.connections.set(outbound.connections_in_use)
    registry = metrics.registry
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated upstream
    return generate_latest(registry), CONTENT_TYPE_LATEST
