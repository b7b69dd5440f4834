"""Each hub process's routing snapshot: built from Redis, swapped as one reference, refreshed on change.

Owns: turning registry records into ``routing.table.RoutingTable`` and keeping it fresh — pub/sub notices for
speed, a version poll as the safety net (a notice lost on reconnect is caught within one poll interval) — and
surviving the registry's bad days: while Redis is unreachable the last table keeps routing and reconnection is
tried every few seconds; a registry that comes back empty or older is taken as the truth after a full reload; a
record that cannot be read is left out, counted and logged instead of stopping every later change.
Must not: be awaited by a request; the hot path only reads ``holder.table``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Final

from registry.codec import RELAY_KEYS_NOTICE, PlatformRecord, decode_platform
from registry.store import REGISTRY_ERRORS, PartyStore
from routing.datetimes import parse_datetime
from routing.headers import authorization_value
from routing.model import InterfaceRole, ModuleID, PartyKey, TokenForm
from routing.table import Platform, RoutingTable

log = logging.getLogger(__name__)

#: A full reload even when no change was missed: the safety net under the version check.
FULL_RELOAD_INTERVAL = 300.0
#: Registries larger than this are rebuilt in a worker thread.
THREADED_RELOAD = 2_000
#: Platforms read and built per step of a full reload.
RELOAD_BATCH = 2_000
#: Change notices taken in one go before the snapshot is patched.
MAX_BATCH = 512
#: Longest wait between reconnection attempts: a registry that is back is seen within this.
MAX_BACKOFF = 2.0
#: Seconds between "registry unreachable" warnings during an outage.
WARN_INTERVAL = 30.0
#: A version check that has not answered within this is an outage (a frozen Redis accepts connections and then
#: answers nothing; redis-py's own socket timeout and retries would wait far longer).
CHECK_TIMEOUT = 3.0
#: One shared (module, role) key object per pair instead of a new tuple per endpoint of every platform.
_KEYS = {(m.value, r.value): (m, r) for m in ModuleID for r in InterfaceRole}


def build_platform(record: PlatformRecord) -> Platform:
    endpoints = {}
    # The operator's overrides come last: they win over what the party published (ocpi-hub registry endpoint).
    for e in (*record.endpoints, *record.endpoint_overrides):
        # Liberal in what is accepted: "Locations"/"sender" name the same interface as "locations"/"SENDER".
        key = _KEYS.get((e.identifier.lower(), e.role.upper()))
        if key is not None:
            endpoints[key] = e.url
    limit = record.rate_limit
    auth = authorization_value(record.token_b, record.token_form is TokenForm.BASE64) if record.token_b else b""
    return Platform(
        id=record.id,
        name=record.name,
        roles=frozenset(record.roles),
        status=record.status,
        endpoints=endpoints,
        auth_header=auth,
        versions_url=record.versions_url,
        registered=record.registered,
        status_since=parse_datetime(record.status_since).timestamp(),
        rate_limit=None if limit is None else (float(limit.rps), limit.burst),
        digests=tuple(bytes.fromhex(d) for d in record.accept_digests),
    )


#: What a record that cannot be decoded or built raises (a defect or a hand-edited key): skipped, not fatal.
RECORD_ERRORS: Final = (ValueError, KeyError, TypeError, AttributeError)


def build_batch(raws: list[bytes], skipped: list[str] | None = None) -> dict[str, Platform]:
    """Stored platform records (raw JSON) → routing platforms by id: the work of a full reload.

    A record that cannot be decoded or built is left out (noted in ``skipped``): one bad record must not freeze
    routing for every other platform."""
    # Building allocates one object graph that lives until the next reload; collecting garbage in the
    # middle of it only walks that graph again and again (most of a large reload's time).
    gc.disable()
    try:
        platforms: dict[str, Platform] = {}
        for raw in raws:
            try:
                platform = build_platform(decode_platform(raw))
            except RECORD_ERRORS as exc:
                if skipped is not None:
                    skipped.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            platforms[platform.id] = platform
        return platforms
    finally:
        gc.enable()


class SnapshotHolder:
    """Holds the current RoutingTable; ``run()`` keeps it fresh until cancelled.

    A change notice names the platform it touched, so a change costs one platform's read and a patched copy
    of the table; a gap in versions (a lost notice, another process's write we did not hear of) costs a full
    reload, as does the periodic safety reload.
    """

    def __init__(self, store: PartyStore, hub: PartyKey, poll_interval: float) -> None:
        self.store = store
        self.hub = hub
        self.poll_interval = poll_interval
        self.table = RoutingTable.empty(hub)
        self.loaded = False
        self.loaded_at = 0.0
        #: Whether the last contact with Redis worked, and when this process last knew its table to be current
        #: (moves with every successful poll, so a quiet registry does not look stale).
        self._contact_ok = False
        self.synced_at = 0.0
        #: True while ``run()`` keeps the table fresh (readiness: a process whose refresh loop died is not ready).
        self.refreshing = False
        #: Records left out of the table because they could not be decoded (counted for the metrics).
        self.skipped_records = 0
        self._warned_at = 0.0
        #: Set by a failed contact, so "reachable again" follows an outage and not every start.
        self._lost = False
        #: Set once ``run()`` has made its first attempt to load, loaded or not: start-up waits for it. The first
        #: load happens inside the subscription, so a change made meanwhile (another process creating the relay
        #: key at its own start) arrives as a notice, not as a newer version that costs a second full reload.
        self.first_attempt = asyncio.Event()

    async def reload(self) -> None:
        """Rebuild the whole table from Redis, a batch of platforms at a time.

        Labelled with the version read before the scan: changes made during it arrive as notices with higher
        versions and are patched in after (a record read in its newer state is simply patched again).
        """
        started_at = self.table.version
        version = await self.store.version()
        # A registry whose version is below the table's went backwards (restarted empty, or restored from an
        # older dump): it is the truth now, so removed parties stop routing and new ones can register.
        regressed = version < started_at
        # Large registries take seconds to decode and build: off the event loop, so requests keep being served.
        threaded = await self.store.platform_count() > THREADED_RELOAD
        platforms: dict[str, Platform] = {}
        skipped: list[str] = []
        async for raws in self.store.scan_platforms(RELOAD_BATCH):
            built = await asyncio.to_thread(build_batch, raws, skipped) if threaded else build_batch(raws, skipped)
            platforms.update(built)
        signing = await self.store.relay_keys()
        if skipped:
            self.skipped_records += len(skipped)
            log.error(
                "registry records that cannot be read were left out of the routing snapshot",
                extra={"fields": {"count": len(skipped), "first": skipped[0]}},
            )
        if self.table.version != started_at:
            return  # a newer table was patched in meanwhile: its notices carry what this read would add
        if regressed:
            log.warning(
                "the registry's version went backwards: taking it as the truth",
                extra={"fields": {"was": started_at, "now": version}},
            )
        self._swap(RoutingTable.build(version, self.hub, platforms, signing))
        log.debug("snapshot version %d loaded (%d platforms)", version, len(platforms))
        if not signing.keys:
            # A registry without relay keys (first start, or restarted empty while this process ran): relay URLs
            # cannot be made or checked until one exists. Its notice brings it to the other processes; this one
            # takes it at once, so that its refresh loop does not see a newer version and read everything again.
            await self.store.ensure_relay_key()
            await self._apply_own_relay_key()

    async def apply_notices(self, notices: list[tuple[str, int]]) -> None:
        """Patch in the platforms named by change notices ``(platform_id, version)``.

        Notices at or below the table's version are already in it. The rest must be exactly the next versions,
        else one was missed and the table is rebuilt. The table is labelled with the last notice's version even
        if a record read is newer: the newer change's own notice re-applies it.
        """
        current = self.table.version
        fresh = [(version, pid) for pid, version in notices if version > current]
        if not fresh:
            return
        versions = sorted({version for version, _ in fresh})
        if versions != list(range(current + 1, current + 1 + len(versions))):
            await self.reload()
            return
        platform_ids = sorted({pid for _, pid in fresh if pid != RELAY_KEYS_NOTICE})
        try:
            _, records = await self.store.platforms_at(platform_ids) if platform_ids else (current, {})
            changed = {pid: (None if record is None else build_platform(record)) for pid, record in records.items()}
        except RECORD_ERRORS:
            await self.reload()  # leaves the unreadable record out, logs and counts it
            return
        keys_changed = any(pid == RELAY_KEYS_NOTICE for _, pid in fresh)
        signing = await self.store.relay_keys() if keys_changed else None
        if self.table.version != current:
            return  # replaced meanwhile (a reload); the notices will be judged against it next time
        table = self.table.patched(versions[-1], changed)
        self._swap(table if signing is None else table.with_signing(versions[-1], signing))

    async def apply_own(self, platform_id: str) -> None:
        """This process's own write, visible to its next request at once (when it is the next version).

        Best effort: the write is committed already, so a failure here only means the change arrives by its
        notice a moment later — it must never turn a completed registration into an error answer."""
        try:
            version, records = await self.store.platforms_at([platform_id])
            if version == self.table.version + 1:
                record = records[platform_id]
                built = None if record is None else build_platform(record)
                self._swap(self.table.patched(version, {platform_id: built}))
        except (*REGISTRY_ERRORS, *RECORD_ERRORS) as exc:
            log.warning("own change not applied at once (its notice will bring it): %s", exc)

    async def _apply_own_relay_key(self) -> None:
        version = await self.store.version()
        if version == self.table.version + 1:
            self._swap(self.table.with_signing(version, await self.store.relay_keys()))

    def _swap(self, table: RoutingTable) -> None:
        self.table = table
        self.loaded = True
        self._synced()
        self.loaded_at = time.time()

    @property
    def stale_after(self) -> float:
        """Seconds without a completed poll after which the registry counts as unreachable, error or not."""
        return max(CHECK_TIMEOUT + 2.0, 8 * self.poll_interval)

    @property
    def reachable(self) -> bool:
        """The last contact worked and was recent: a registry that hangs stops looking reachable too."""
        return self._contact_ok and time.time() - self.synced_at <= self.stale_after

    def _synced(self) -> None:
        if self._lost and self.loaded:
            self._lost = False
            log.info("registry reachable again", extra={"fields": {"snapshot_version": self.table.version}})
        self._contact_ok = True
        self.synced_at = time.time()

    def _unreachable(self, exc: BaseException) -> None:
        self._contact_ok = False
        self._lost = True
        # One warning per half minute: an outage must not flood the log with a line per retry.
        if time.monotonic() - self._warned_at >= WARN_INTERVAL:
            self._warned_at = time.monotonic()
            log.warning("registry unreachable, routing from snapshot version %d: %s", self.table.version, exc)

    async def _version(self) -> int:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await self.store.version()

    async def run(self) -> None:
        self.refreshing = True
        try:
            await self._refresh()
        finally:
            self.refreshing = False
            self.first_attempt.set()  # never leave start-up waiting on a loop that ended

    async def _refresh(self) -> None:
        backoff = 0.1
        task = asyncio.current_task()
        while True:
            _stop_if_cancelled(task)
            pubsub = self.store.redis.pubsub()
            try:
                async with asyncio.timeout(CHECK_TIMEOUT):
                    await pubsub.subscribe(self.store.keys.changes())
                # Subscribed first, then compared: a change made in between is in the table or in a notice. After
                # an outage the whole registry is read again even at the same version: a Redis that failed over
                # to a replica which missed writes, then took others, can be there with other contents.
                if not self.loaded or self._lost or await self._version() != self.table.version:
                    await self.reload()
                self._synced()
                self.first_attempt.set()
                backoff = 0.1
                while True:
                    _stop_if_cancelled(task)
                    notices: list[tuple[str, int]] = []
                    unversioned = False
                    # Subscription acknowledgements are read and skipped here, not by redis-py: with
                    # ignore_subscribe_messages it returns None for one, which read as "nothing pending" when a
                    # notice stood right behind it — the version check below then found a newer registry and
                    # rebuilt the whole table (seconds at 100k parties) for a change the notice carried.
                    message = await pubsub.get_message(timeout=self.poll_interval)
                    while message is not None and len(notices) < MAX_BATCH:
                        if message.get("type") == "message":
                            data = message.get("data")
                            text = data.decode() if isinstance(data, bytes) else str(data)
                            platform_id, _, version = text.partition("|")
                            if version.isdigit():
                                notices.append((platform_id, int(version)))
                            else:
                                unversioned = True
                        message = await pubsub.get_message(timeout=0)
                    if unversioned or time.time() - self.loaded_at > FULL_RELOAD_INTERVAL:
                        await self.reload()
                    elif notices:
                        await self.apply_notices(notices)
                    elif await self._version() != self.table.version:
                        await self.reload()
                    self._synced()
            except (*REGISTRY_ERRORS, TimeoutError) as exc:
                self._unreachable(exc)
                self.first_attempt.set()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # unannotated in redis-py


def _stop_if_cancelled(task: asyncio.Task[object] | None) -> None:
    """End the loop when its task was asked to stop but the request never arrived as an exception: redis-py reads
    and reconnects under timeouts of its own, and a cancellation landing on one of those can come back as "no
    message" (seen: a test's cancel after a Redis restart went unanswered until pytest's 60 s timeout, 3 runs in 15)."""
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
