"""How the registry scales: routing snapshots of 10, 1k, 10k and 100k parties, and how fast a change reaches
every worker of a running hub.

Measures, per registry size (synthetic platforms from ``benchmarks.micro.synthetic_registry``: one party each,
12 endpoints, a token C digest each, all registered and CONNECTED):

(a) reload cost in-process, by the code a reload runs: ``registry.snapshot.build_batch`` over the records' JSON
    bytes in batches of ``RELOAD_BATCH`` (decode + build, with the GC paused as it does) and
    ``RoutingTable.build``; best of a few repeats.
(b) snapshot memory with ``tracemalloc`` (GC off while tracing), up to 10k parties: what a whole reload
    (JSON bytes → table, records dropped) keeps and its peak: MB and bytes per party. The hub workers' RSS in
    (d) is the real figure at every size.
(c) lookups on random parties: µs per ``resolve`` (with fresh ``PartyKey`` objects, as parsed headers are),
    per ``authenticate_header`` with the value cached, per uncached authentication (Base64 + SHA-256), and per
    ``authenticate_header`` for uniformly random callers once every platform has called: the per-snapshot
    cache keeps at most ``MAX_CACHED_CALLERS`` values, so above that size most callers pay the uncached price.
(d) propagation: a private redis-server (``tests.support.redis_server.running_redis``); the registry written in
    bulk with a pipeline using the ``RegistryKeys`` layout (platforms, tokens and parties hashes, version);
    ``ocpi-hub serve --workers 2`` started by PID (``benchmarks.topology.process``) and waited on through
    ``/readyz`` on fresh connections; then one new platform declared with ``PartyStore.declare`` and
    ``GET /ocpi/versions`` polled with its token A, each poll on a new connection (so both workers answer),
    ~1 ms apart, until 40 polls in a row get 200. Reported, in seconds from ``declare`` returning: the first
    200, the last refusal, ``every_worker_s`` (the first 200 after the last refusal) and ``confirmed_s`` (end
    of the 40-poll streak), and the slowest poll (a worker rebuilding its snapshot does not answer meanwhile:
    the reload is synchronous on its event loop). Also the bulk-load time, the HGETALL of the platforms hash
    (a reload's transfer), the hub's start-up to ready (each worker loads the snapshot), and each worker's RSS.
    Keys are deleted (this run's prefix only) and every process is stopped by PID.

Synthetic records publish no hubclientinfo endpoint, so the declare does not set off a ClientInfo PUT to
every platform (that fan-out is a separate cost); the scheduler's liveness pass still runs as in production.
Smoke: sizes 10 and 1k, propagation at 10 only. Run: ``python -m benchmarks.scale [--smoke]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import random
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Sequence
from typing import Final

from redis.asyncio import Redis

from benchmarks.micro import (
    HUB,
    MODULE,
    ROLE,
    SyntheticRegistry,
    authorization,
    best_ns,
    fresh_table,
    synthetic_registry,
)
from benchmarks.topology import process
from registry.audit import Actor
from registry.codec import PlatformRecord
from registry.keys import RegistryKeys
from registry.snapshot import RELOAD_BATCH, build_batch
from registry.store import PartyStore
from routing.headers import parse_authorization
from routing.model import PartyKey, PartyRole, Role
from routing.table import MAX_CACHED_CALLERS, Platform, RoutingTable
from tests.support.processes import hub_env, ocpi_hub_executable
from tests.support.redis_server import free_port, running_redis

#: Who the test's registry changes are made by (audit events name an actor).
TEST_ACTOR = Actor.cli("test", "localhost")

SIZES: Final = (10, 1_000, 10_000, 100_000)
SMOKE_SIZES: Final = (10, 1_000)
SMOKE_PROPAGATION_SIZES: Final = (10,)
WORKERS: Final = 2
POLLS_PER_ROUND: Final = 40
POLL_GAP: Final = 0.001
#: Not one of the synthetic parties (those never use country codes starting with Z).
NEW_PARTY: Final = PartyRole(PartyKey("ZY", "NEW"), Role.CPO)
_CHUNK: Final = 2_000


def _mb(size: int) -> float:
    return round(size / 2**20, 2)


# -- (a) reload cost -----------------------------------------------------------------------------------------


def reload_table(raws: Sequence[bytes]) -> RoutingTable:
    """A whole reload as ``SnapshotHolder.reload`` runs it: decode and build batch by batch, then the table."""
    platforms: dict[str, Platform] = {}
    for start in range(0, len(raws), RELOAD_BATCH):
        platforms.update(build_batch(list(raws[start : start + RELOAD_BATCH])))
    return RoutingTable.build(1, HUB, platforms)


def reload_cost(raws: list[bytes], repeats: int) -> dict[str, object]:
    """A whole reload, best of a few repeats (once at 100k)."""
    size = len(raws)
    repeats = repeats if size <= 10_000 else 1
    reload_ns = best_ns(lambda: reload_table(raws), repeats)
    return {
        "json_bytes_mb": _mb(sum(map(len, raws))),
        "reload_s": round(reload_ns / 1e9, 4),
        "reload_us_per_platform": round(reload_ns / size / 1e3, 2),
        "repeats": repeats,
    }


# -- (b) memory ----------------------------------------------------------------------------------------------


def _traced(build: Callable[[], RoutingTable]) -> tuple[int, int, RoutingTable]:
    """(bytes still allocated with the result alive, peak bytes, the result) of one call; the GC is off while
    tracing (tracemalloc makes every allocation slower, and refcounting frees nearly everything a build drops)."""
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        table = build()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        gc.enable()
    return current, peak, table


def memory(raws: list[bytes]) -> tuple[dict[str, object], RoutingTable]:
    """What a whole reload keeps (up to 10k: tracing 100k would cost ~15 s; bytes per party is flat).

    Also returns a table built the same way (the one the lookups then use).
    """
    size = len(raws)
    if size > 10_000:
        return {}, reload_table(raws)
    kept, peak, table = _traced(lambda: reload_table(raws))
    return {
        "snapshot_retained_mb": _mb(kept),
        "reload_peak_mb": _mb(peak),
        "retained_bytes_per_party": round(kept / size),
    }, table


# -- (c) lookups ---------------------------------------------------------------------------------------------


def lookups(
    registry: SyntheticRegistry, base: RoutingTable, samples: int, repeats: int, seed: int = 11
) -> dict[str, object]:
    """µs per lookup on a stream of uniformly random parties and callers."""
    rng = random.Random(seed)
    size = len(registry.records)
    picks = [rng.randrange(size) for _ in range(samples)]
    # New PartyKey objects, as header parsing makes: the dict lookup then also runs PartyKey.__eq__.
    parties = [PartyKey(p.country_code, p.party_id) for p in (registry.records[i].roles[0].party for i in picks)]
    everyone = [authorization(token) for token in registry.tokens]
    stream = [everyone[i] for i in picks]
    repeats = repeats if size <= 10_000 else 3
    # The steady state after long traffic: every platform has called once, in random order; the cache kept
    # the first MAX_CACHED_CALLERS of them and, once full, takes no more.
    steady = fresh_table(base)
    for value in rng.sample(everyone, size):
        steady.authenticate_header(value)
    cached = [value for value in stream if value in steady._callers]  # reads the cache it measures

    caller = base.authenticate_header(everyone[0])
    sender = registry.records[0].roles[0].party

    def resolve() -> None:
        for party in parties:
            base.resolve(caller, sender, party, MODULE, ROLE)

    def uncached() -> None:
        for value in stream:
            base.authenticate(parse_authorization(value))

    def hits() -> None:
        for value in cached:
            steady.authenticate_header(value)

    def random_callers() -> None:
        for value in stream:
            steady.authenticate_header(value)

    return {
        "samples": samples,
        "resolve_us": round(best_ns(resolve, repeats) / samples / 1e3, 3),
        "authenticate_header_cached_us": round(best_ns(hits, repeats) / len(cached) / 1e3, 3),
        "authenticate_uncached_us": round(best_ns(uncached, repeats) / samples / 1e3, 3),
        "authenticate_header_random_us": round(best_ns(random_callers, repeats) / samples / 1e3, 3),
        "caller_cache_hit_ratio_random": round(len(cached) / samples, 3),
    }


# -- (d) propagation -----------------------------------------------------------------------------------------


async def http_status(port: int, path: bytes, auth: bytes | None = None) -> int:
    """One GET on a new connection; 0 when the connection fails."""
    request = b"GET " + path + b" HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n"
    if auth is not None:
        request += b"authorization: " + auth + b"\r\n"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return 0
    try:
        writer.write(request + b"\r\n")
        line = await reader.readline()
        await reader.read()
        parts = line.split()
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    except OSError:
        return 0
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def bulk_load(redis: Redis, keys: RegistryKeys, records: Sequence[PlatformRecord], raws: Sequence[bytes]) -> None:
    """Write platforms, token grants and party owners as ``PartyStore`` lays them out, in pipelined chunks."""
    async with redis.pipeline(transaction=False) as pipe:
        for start in range(0, len(records), _CHUNK):
            chunk = range(start, min(start + _CHUNK, len(records)))
            pipe.hset(keys.platforms(), mapping={records[i].id: raws[i] for i in chunk})
            pipe.hset(keys.tokens(), mapping={records[i].accept_digests[0]: f"{records[i].id}|C" for i in chunk})
            pipe.hset(keys.parties(), mapping={str(r.party): records[i].id for i in chunk for r in records[i].roles})
            await pipe.execute()
        pipe.set(keys.version(), 1)
        await pipe.execute()


async def _wait_ready(port: int, timeout: float, in_a_row: int = 10) -> None:
    """``/readyz`` 200 on ``in_a_row`` consecutive new connections (so, very likely, from every worker)."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < in_a_row:
        streak = streak + 1 if await http_status(port, b"/readyz") == 200 else 0
        if time.monotonic() > deadline:
            raise RuntimeError("the hub did not become ready")
        await asyncio.sleep(0.005 if streak else 0.05)


def _worker_rss_mb(pid: int) -> list[float]:
    """Resident memory of each worker process of the hub started as ``pid``."""
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
        # uvicorn's workers are multiprocessing spawn children; skip its resource tracker.
        workers = [c for c in children if "resource_tracker" not in " ".join(c.cmdline())]
        return sorted(round(w.memory_info().rss / 2**20, 1) for w in workers)
    except psutil.NoSuchProcess:
        return []


async def propagation(url: str, registry: SyntheticRegistry, raws: list[bytes], timeout: float) -> dict[str, object]:
    """Bulk-load the registry, start a hub, declare one platform and time until every worker accepts it."""
    prefix = f"bench:scale:{uuid.uuid4().hex}:"
    keys = RegistryKeys(prefix)
    redis = Redis.from_url(url)
    store = PartyStore(redis, keys)
    result: dict[str, object] = {"workers": WORKERS}
    try:
        started = time.perf_counter()
        await bulk_load(redis, keys, registry.records, raws)
        result["bulk_load_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        loaded = await redis.hgetall(keys.platforms())  # the transfer part of a reload (decoding is in "reload")
        result["redis_hgetall_platforms_s"] = round(time.perf_counter() - started, 3)
        if len(loaded) != len(registry.records):
            raise RuntimeError(f"loaded {len(loaded)} platforms, expected {len(registry.records)}")
        del loaded
        port = free_port()
        env = hub_env(key_prefix=prefix)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        hub = ocpi_hub_executable()
        args = ("--redis-url", url, "--workers", str(WORKERS), "--port", str(port), "--log-level", "warning")
        with process(hub, "serve", *args, "--drain-time", "1", env=env) as child:
            started = time.perf_counter()
            await _wait_ready(port, timeout)
            result["hub_ready_s"] = round(time.perf_counter() - started, 3)
            result["worker_rss_mb_ready"] = _worker_rss_mb(child.pid)
            started = time.perf_counter()
            _, token_a = await store.declare([NEW_PARTY], "scale-probe", actor=TEST_ACTOR)
            declared = time.perf_counter()
            result["declare_s"] = round(declared - started, 4)
            result.update(await _poll_until_everywhere(port, authorization(token_a), declared, timeout))
            result["worker_rss_mb_after"] = _worker_rss_mb(child.pid)
    finally:
        async for key in redis.scan_iter(match="{" + prefix.rstrip(":") + "}:*"):
            await redis.delete(key)
        await redis.aclose()
    return result


async def _poll_until_everywhere(port: int, auth: bytes, since: float, timeout: float) -> dict[str, object]:
    """Poll until POLLS_PER_ROUND consecutive new-connection polls get 200.

    ``every_worker_s`` is the first poll of that final streak: the first 200 after the last refusal.
    ``slowest_poll_s`` shows how long a worker stopped answering while it rebuilt its snapshot.
    """
    first_ok: float | None = None
    last_refused: float | None = None
    streak_began = 0.0
    streak = polls = 0
    slowest = 0.0
    while streak < POLLS_PER_ROUND:
        sent = time.perf_counter()
        status = await http_status(port, b"/ocpi/versions", auth)
        now = time.perf_counter() - since
        slowest = max(slowest, now + since - sent)
        polls += 1
        if status == 200:
            first_ok = now if first_ok is None else first_ok
            streak_began = now if streak == 0 else streak_began
            streak += 1
        else:
            last_refused, streak = now, 0
            if now > timeout:
                raise RuntimeError(f"the new platform was not accepted everywhere within {timeout} s")
        await asyncio.sleep(POLL_GAP)
    return {
        "first_200_s": round(first_ok or 0.0, 4),
        "last_refused_s": None if last_refused is None else round(last_refused, 4),
        "every_worker_s": round(streak_began, 4),
        "confirmed_s": round(time.perf_counter() - since, 4),
        "polls": polls,
        "slowest_poll_s": round(slowest, 4),
    }


# -- entry point ---------------------------------------------------------------------------------------------


async def run_async(smoke: bool = False) -> dict[str, object]:
    sizes = SMOKE_SIZES if smoke else SIZES
    propagate = SMOKE_PROPAGATION_SIZES if smoke else SIZES
    samples = 1_000 if smoke else 20_000
    repeats = 3 if smoke else 5
    started = time.perf_counter()
    figures: dict[str, dict[str, object]] = {}
    with running_redis() as url:
        for size in sizes:
            size_started = time.perf_counter()
            registry = synthetic_registry(size)
            raws = list(registry.raws)
            entry: dict[str, object] = {"reload": reload_cost(raws, repeats)}
            entry["memory"], table = memory(raws)
            entry["lookups"] = lookups(registry, table, samples, repeats)
            del table
            if size in propagate:
                entry["propagation"] = await propagation(url, registry, raws, timeout=120.0)
            entry["wall_s"] = round(time.perf_counter() - size_started, 2)
            figures[str(size)] = entry
            del registry, raws
            gc.collect()
    return {
        "benchmark": "scale",
        "smoke": smoke,
        "endpoints_per_platform": 12,
        "caller_cache_capacity": MAX_CACHED_CALLERS,
        "sizes": figures,
        "python": sys.version.split()[0],
        "wall_s": round(time.perf_counter() - started, 2),
    }


def run(smoke: bool = False) -> dict[str, object]:
    """Reload cost, memory, lookup µs and propagation seconds per registry size."""
    return asyncio.run(run_async(smoke))


if __name__ == "__main__":
    print(json.dumps(run(smoke="--smoke" in sys.argv[1:]), indent=2))
