"""A hub process's background duties: flushing signs of life, and — in exactly one process per Redis, the
holder of the scheduler lease — pushing ClientInfo changes and checking liveness (hubclientinfo §15.2.3).

Owns: the lease loop (take/renew, a fenced cursor so a change is pushed once; only a holder that dies in the
middle of a push leaves that one change to be pushed again by the next holder), the
still-alive GETs of silent parties' versions endpoints, and OFFLINE ↔ CONNECTED from their results or traffic.
Must not: run request logic, or push without holding the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid

from hub import logs
from hub.clientinfo import ClientInfoService
from hub.http.server import REFUSALS
from hub.runtime import Runtime
from hub.tasks import gather_limited
from registry.audit import HUB
from registry.codec import ClientInfo
from registry.store import REGISTRY_ERRORS
from routing import errors
from routing.model import ConnectionStatus
from routing.table import Platform

log = logging.getLogger("ocpihub.scheduler")

FLUSH_INTERVAL = 1.0
#: Seconds between warnings about refused connections (their counts are in the metrics every second).
REFUSAL_WARN_INTERVAL = 30.0
PROBE_CONCURRENCY = 16


def start(rt: Runtime, clientinfo: ClientInfoService) -> None:
    rt.tasks.supervise("seen-flush", lambda: _flush_loop(rt), rt.metrics.restarts_of)
    scheduler = Scheduler(rt, clientinfo)
    rt.tasks.supervise("scheduler", scheduler.run, rt.metrics.restarts_of)


async def flush(rt: Runtime) -> None:
    """Write this process's signs of life to Redis (also on shutdown)."""
    if rt.seen:
        seen, rt.seen = rt.seen, {}
        try:
            await rt.store.touch(seen)
        except REGISTRY_ERRORS as exc:
            log.warning("could not record signs of life: %s", exc)


class RefusalReport:
    """One warning per REFUSAL_WARN_INTERVAL at most with what the HTTP layer refused meanwhile (a flood must be
    visible in the log without writing a line per refused connection)."""

    def __init__(self) -> None:
        self.reported: dict[str, int] = {}
        self.at = 0.0

    def __call__(self, now: float) -> None:
        if now - self.at < REFUSAL_WARN_INTERVAL:
            return
        new = {reason: count - self.reported.get(reason, 0) for reason, count in REFUSALS.items()}
        new = {reason: count for reason, count in new.items() if count}
        if new:
            self.at = now
            self.reported = dict(REFUSALS)
            log.warning("connections refused by the HTTP layer", extra={"fields": {"refused": new}})


async def _flush_loop(rt: Runtime) -> None:
    report = RefusalReport()
    while True:
        await asyncio.sleep(FLUSH_INTERVAL)
        await flush(rt)
        trace_dropped = rt.tracker.dropped if rt.tracker else 0
        rt.metrics.refresh(rt.holder, rt.outbound, rt.leader, trace_dropped, rt.learner.dropped)
        report(time.monotonic())
        logs.flush()


class Scheduler:
    """Leader-only work, under a Redis lease that another process takes over within ``lease_ttl``."""

    def __init__(self, rt: Runtime, clientinfo: ClientInfoService) -> None:
        self.rt = rt
        self.clientinfo = clientinfo
        self.owner = f"{os.getpid()}:{uuid.uuid4().hex}"
        self.ttl_ms = int(rt.settings.lease_ttl * 1000)
        self.tick = min(rt.settings.lease_ttl / 3, max(rt.settings.liveness_interval / 4, 0.05), 1.0)
        #: How often silent parties are looked for: a quarter of the liveness interval, at most every 30 s.
        self.probe_interval = max(min(rt.settings.liveness_interval / 4, 30.0), 0.05)
        self.rt.leader = False
        self.next_probe = 0.0
        #: A ClientInfo PUT may take at most this: a third of the lease, so one slow party cannot cost it.
        self.push_timeout = min(rt.settings.forward_timeout, rt.settings.lease_ttl / 3)

    async def run(self) -> None:
        failing = False
        try:
            while True:
                try:
                    self.rt.leader = await self.rt.store.hold_lease(self.owner, self.ttl_ms)
                    if self.rt.leader:
                        await self._push_changes()
                        if time.monotonic() >= self.next_probe:
                            await self._check_liveness()
                            self.next_probe = time.monotonic() + self.probe_interval
                    failing = False
                except REGISTRY_ERRORS as exc:
                    self.rt.leader = False
                    if not failing:  # once per outage, not once per tick
                        log.warning("scheduler: registry unreachable: %s", exc)
                    failing = True
                await asyncio.sleep(self.tick / 2)
        finally:
            if self.rt.leader:
                self.rt.leader = False
                await asyncio.shield(self._release())

    async def _release(self) -> None:
        with contextlib.suppress(*REGISTRY_ERRORS):  # the lease expires by itself anyway
            await self.rt.store.release_lease(self.owner)

    async def _push_changes(self) -> None:
        cursor = await self.rt.store.events_cursor()
        events = await self.rt.store.events_after(cursor)
        # Push with a routing snapshot at least as new as the changes, so a newcomer is among the recipients;
        # the snapshot catches up within a poll interval, so a lagging one only postpones this round.
        if events and self.rt.holder.table.version < await self.rt.store.version():
            return
        welcomed: set[str] = set()
        for entry_id, info in events:
            # Each push is bounded well inside the lease, and the lease is renewed with every step of the
            # cursor; a failed push is not retried (transport_and_format §4.4) and the cursor moves on. A
            # holder that dies between a push and its cursor step leaves that one change to be pushed again.
            if not await self.rt.store.hold_lease(self.owner, self.ttl_ms):
                self.rt.leader = False
                return
            await self.clientinfo.push(info, timeout=self.push_timeout)
            self._welcome(entry_id, info, welcomed)
            if not await self.rt.store.advance_cursor(self.owner, entry_id, self.ttl_ms):
                self.rt.leader = False  # lost the lease mid-way: the new holder continues from the cursor
                return

    def _welcome(self, entry_id: str, info: ClientInfo, welcomed: set[str]) -> None:
        """A platform that has just become CONNECTED — by its own credentials POST or PUT, by ``registry connect``
        or by ``resume`` — gets the ClientInfo of every other party (once per platform and round)."""
        if info.status is not ConnectionStatus.CONNECTED:
            return
        platform = self.rt.holder.table.parties.get(info.party)
        if platform is not None and platform.id not in welcomed:
            welcomed.add(platform.id)
            self.clientinfo.welcome(platform.id, entry_id)

    async def _check_liveness(self) -> None:
        now = time.time()
        seen = await self.rt.store.last_seen()
        interval = self.rt.settings.liveness_interval
        probes = []
        for platform in self.rt.holder.table.platforms.values():
            if not platform.registered or platform.status not in (ConnectionStatus.CONNECTED, ConnectionStatus.OFFLINE):
                continue
            record_since = platform.status_since
            last = seen.get(platform.id, 0.0)
            if platform.status is ConnectionStatus.OFFLINE and last > record_since:
                await self.rt.store.set_liveness(platform.id, True, actor=HUB)  # traffic is a sign of life
            elif now - max(last, record_since) >= interval:
                probes.append(self._probe(platform))
        if probes:
            await gather_limited(PROBE_CONCURRENCY, probes)

    async def _probe(self, platform: Platform) -> None:
        """GET the party's versions endpoint: it has no side effects and every party has it (§15.2.3)."""
        alive = False
        try:
            reply = await self.rt.outbound.call_json(
                "GET", platform.versions_url, platform.auth_header, timeout=self.rt.settings.forward_timeout
            )
            alive = reply.status == 200
        except errors.OcpiError:
            alive = False
        self.rt.metrics.checks["ok" if alive else "error"].inc()
        if alive:
            await self.rt.store.touch({platform.id: time.time()})
        await self.rt.store.set_liveness(platform.id, alive, actor=HUB)
        line = logs.event(
            log,
            "liveness check",
            {
                "event": "liveness",
                "kind": "liveness",
                "platform": platform.id,
                "alive": alive,
                "method": "GET",
                "outcome": "ok" if alive else "unreachable",
            },
        )
        if self.rt.tracker is not None:
            self.rt.tracker.record(line)
