"""The hub's store of broadcast data (issue "The hub keeps what is broadcast"): storing pushes, GET All via Hub,
open routing, and the store's Redis memory.

Measures, on the end-to-end topology of benchmarks/topology.py (one hub worker; the CPO NL/CPO and the eMSP
BE/EMP, whose module endpoints are the fast stub party):

(a) apply rate: the CPO PUTs ``count`` new Locations (``location()``: 3 EVSEs x 2 Connectors, ~2.5 KB) to
    ``/ocpi/2.2.1/receiver/locations/NL/CPO/{id}`` with OCPI-to = ZZ/HUB, ``connections`` at a time (aiohttp in
    this process). The hub answers each at once, stores it (one EVALSHA) and copies it to its one recipient, the
    eMSP (the stub answers the copy): 1 recipient, so the fan-out does not dominate. Objects stored per second =
    ``count`` / the time from the first PUT until ``ObjectStore.counts()`` (polled every 5 ms on the hub's Redis)
    holds them all. Also reported: pushes answered per second (the pusher's pace: where it equals the stored
    rate, the sender is the bound) and the hub's CPU per stored object (psutil, hub processes only). A first
    batch of a tenth as many pushes warms the hub up (connections, scripts) and is not counted.
(b) GET All: the store is topped up to ``store_size`` Locations in-process with ``ObjectStore.apply`` (the code
    the hub runs for a push); the eMSP GETs ``/ocpi/2.2.1/sender/locations?offset={store_size / 2}&limit=100``
    with OCPI-to = ZZ/HUB, which the hub answers from its store (100 stored objects, byte for byte);
    ``check_get_all`` makes sure of that before any load. benchmarks/run.py measures it in its interleaved rounds.
(c) open routing: the eMSP broadcasts Token TOK1 (``broadcast_token``; storing it feeds the owner index in the
    same Lua call); the CPO POSTs ``/ocpi/2.2.1/sender/tokens/TOK1/authorize?type=RFID`` with OCPI-to = BE/EMP,
    and without OCPI-to (the hub looks the owner up: one Redis round trip); the stub answers an
    AuthorizationInfo. benchmarks/run.py measures both at 1 connection: the p50 difference is the open route's.
(d) memory: a private redis-server (tests.support.redis_server.running_redis), ``ObjectStore.apply`` in-process,
    ``MEMORY_CONCURRENCY`` at a time; INFO memory ``used_memory`` before and after ``locations`` Locations
    (~2.5 KB) and, separately, ``tokens`` Tokens (~290 B), each measured after a warm-up of another owner's
    objects (keys and scripts exist, every client connection is open). Reported per 10,000 Locations and per
    1,000,000 Tokens, scaled linearly from what was measured (10,000 and 100,000; smoke 1,000 and 5,000).

Run alone: ``python -m benchmarks.holdings [--smoke]`` ((a) once, (b) and (c) once each without interleaving,
then (d)). The figures in benchmarks/RESULTS.md come from ``python -m benchmarks.run``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import httpx
import orjson
from redis.asyncio import Redis

from benchmarks import topology
from benchmarks.load import Request, ResourceSampler, run_load
from benchmarks.topology import CPO, EMSP, HUB, Routed, routed_headers
from registry.keys import RegistryKeys
from registry.objects import ObjectPush, ObjectStore, Outcome
from routing.model import ModuleID
from tests.support.redis_server import running_redis

TIMESTAMP: Final = "2026-01-01T00:00:00Z"
#: GET All via Hub: the store's size and the page asked for.
STORE_SIZE: Final = 10_000
SMOKE_STORE_SIZE: Final = 1_000
PAGE_LIMIT: Final = 100
#: Broadcast pushes per apply-rate run.
APPLY_PUSHES: Final = 2_000
SMOKE_APPLY_PUSHES: Final = 200
#: What (d) measures.
MEMORY_LOCATIONS: Final = 10_000
MEMORY_TOKENS: Final = 100_000
SMOKE_MEMORY_LOCATIONS: Final = 1_000
SMOKE_MEMORY_TOKENS: Final = 5_000
MEMORY_CONCURRENCY: Final = 64
#: The token the eMSP broadcasts and the CPO authorizes.
TOKEN_UID: Final = "TOK1"
#: An owner of nothing else: the warm-up objects of (d).
WARMUP_OWNER: Final = ("DE", "WRM")
AUTHORIZE_BODY: Final = b'{"location_id":"LOC1","evse_uids":["NL*CPO*E0"]}'
_POLL: Final = 0.005


# -- objects ---------------------------------------------------------------------------------------------------


def location_id(index: int) -> str:
    return f"LOC{index:06d}"


def location(index: int, owner: tuple[str, str] = CPO) -> bytes:
    """A realistic Location (mod_locations §8.3.1): 3 EVSEs with an AC socket and a DC cable each, ~2.5 KB."""
    lid = location_id(index)
    document = {
        "country_code": owner[0],
        "party_id": owner[1],
        "id": lid,
        "publish": True,
        "name": f"Benchmark Charging Plaza {index}",
        "address": f"Stationsplein {index % 300 + 1}",
        "city": "Amsterdam",
        "postal_code": "1012AB",
        "country": "NLD",
        "coordinates": {"latitude": f"52.{379189 + index % 1000:06d}", "longitude": f"4.{899431 + index % 1000:06d}"},
        "parking_type": "PARKING_LOT",
        "evses": [
            {
                "uid": f"{lid}-E{e}",
                "evse_id": f"NL*CPO*E{index:06d}{e}",
                "status": "AVAILABLE",
                "capabilities": ["RFID_READER", "REMOTE_START_STOP_CAPABLE"],
                "connectors": [
                    {
                        "id": "1",
                        "standard": "IEC_62196_T2",
                        "format": "SOCKET",
                        "power_type": "AC_3_PHASE",
                        "max_voltage": 400,
                        "max_amperage": 32,
                        "max_electric_power": 22000,
                        "tariff_ids": ["TARIFF-AC"],
                        "last_updated": TIMESTAMP,
                    },
                    {
                        "id": "2",
                        "standard": "IEC_62196_T2_COMBO",
                        "format": "CABLE",
                        "power_type": "DC",
                        "max_voltage": 920,
                        "max_amperage": 200,
                        "max_electric_power": 150000,
                        "tariff_ids": ["TARIFF-DC"],
                        "last_updated": TIMESTAMP,
                    },
                ],
                "physical_reference": str(e + 1),
                "floor_level": "0",
                "last_updated": TIMESTAMP,
            }
            for e in range(3)
        ],
        "operator": {"name": "Benchmark Charging B.V.", "website": "https://cpo.example.com"},
        "facilities": ["TRAIN_STATION", "CAFE"],
        "time_zone": "Europe/Amsterdam",
        "opening_times": {"twentyfourseven": True},
        "charging_when_closed": True,
        "last_updated": TIMESTAMP,
    }
    return orjson.dumps(document)


def token(uid: str, owner: tuple[str, str] = EMSP) -> bytes:
    """A Token (mod_tokens §12.3.2), ~290 bytes."""
    serial = sum(map(ord, uid)) * 7919 % 10**8
    document = {
        "country_code": owner[0],
        "party_id": owner[1],
        "uid": uid,
        "type": "RFID",
        "contract_id": f"{owner[0]}-{owner[1]}-C{serial:08d}",
        "visual_number": f"{owner[0]}-{owner[1]}-{serial:08d}",
        "issuer": "Benchmark eMSP",
        "valid": True,
        "whitelist": "ALLOWED",
        "language": "nl",
        "default_profile_type": "REGULAR",
        "last_updated": TIMESTAMP,
    }
    return orjson.dumps(document)


def location_push(index: int, owner: tuple[str, str] = CPO) -> ObjectPush:
    return ObjectPush(ModuleID.LOCATIONS, "PUT", (*owner, location_id(index)), None, location(index, owner))


def token_push(index: int, owner: tuple[str, str] = EMSP) -> ObjectPush:
    uid = f"TOK{index:07d}"
    return ObjectPush(ModuleID.TOKENS, "PUT", (*owner, uid), "RFID", token(uid, owner))


async def apply_all(store: ObjectStore, pushes: Iterable[ObjectPush], concurrency: int) -> int:
    """Apply ``pushes`` in-process, ``concurrency`` at a time; how many were stored (anything else: RuntimeError)."""
    queue: Iterator[ObjectPush] = iter(pushes)
    stored = 0

    async def worker() -> None:
        nonlocal stored
        for push in queue:  # one iterator shared by the workers: each push is taken once
            result = await store.apply(push)
            if result.outcome is not Outcome.STORED:
                raise RuntimeError(f"{push.module.value} {push.segments} not stored: {result.outcome} {result.reason}")
            stored += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return stored


@asynccontextmanager
async def hub_store(routed: Routed) -> AsyncIterator[ObjectStore]:
    """The store of broadcast data of a running hub, as the hub itself opens it (its Redis, its key prefix)."""
    redis = Redis.from_url(routed.redis_url)
    try:
        yield ObjectStore(redis, RegistryKeys(routed.key_prefix))
    finally:
        await redis.aclose()


# -- (a) apply rate --------------------------------------------------------------------------------------------


async def _until_stored(store: ObjectStore, module: ModuleID, target: int, timeout: float) -> float:
    """perf_counter() once ``module`` holds ``target`` objects."""
    deadline = time.perf_counter() + timeout
    while (await store.counts())[module.value] < target:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the hub's store did not reach {target} {module.value} within {timeout} s")
        await asyncio.sleep(_POLL)
    return time.perf_counter()


async def apply_rate(routed: Routed, store: ObjectStore, first: int, count: int, connections: int) -> dict[str, float]:
    """Broadcast ``count`` new Locations (indexes from ``first``) through the hub; time until all are stored."""
    bodies = [location(first + i) for i in range(count)]
    base = f"{routed.hub_url}/ocpi/2.2.1/receiver/locations/{CPO[0]}/{CPO[1]}/"
    urls = [base + location_id(first + i) for i in range(count)]
    headers = routed_headers(routed.cpo_token, HUB, CPO)
    target = (await store.counts())[ModuleID.LOCATIONS.value] + count
    jobs = iter(range(count))
    errors = 0
    last_answer = 0.0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors, last_answer
        for i in jobs:
            async with session.put(urls[i], data=bodies[i], headers=headers) as reply:
                await reply.read()
                errors += reply.status != 200
            last_answer = time.perf_counter()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        with ResourceSampler(routed.hub_pids) as sampler:
            started = time.perf_counter()
            pushing = asyncio.gather(*(worker(session) for _ in range(connections)))
            stored_at = await _until_stored(store, ModuleID.LOCATIONS, target, timeout=60.0)
            await pushing
    elapsed = stored_at - started
    return {
        "pushes": count,
        "connections": connections,
        "recipients": 1,
        "stored_per_s": round(count / elapsed),
        "answered_per_s": round(count / (last_answer - started)),
        "elapsed_s": round(elapsed, 3),
        "hub_cpu_us_per_object": round(sampler.cpu_used / count * 1e6, 1),
        "errors": errors,
    }


# -- (b) GET All, (c) open routing -------------------------------------------------------------------------------


def get_all_request(routed: Routed, offset: int) -> Request:
    """The eMSP's GET All via Hub: a page of ``PAGE_LIMIT`` Locations from the hub's store."""
    url = f"{routed.hub_url}/ocpi/2.2.1/sender/locations?offset={offset}&limit={PAGE_LIMIT}"
    return Request("GET", url, routed_headers(routed.emsp_token, HUB, EMSP))


def authorize_request(routed: Routed, open_routed: bool) -> Request:
    """The CPO's real-time authorization of TOK1, with OCPI-to = BE/EMP or without (open routing)."""
    url = f"{routed.hub_url}/ocpi/2.2.1/sender/tokens/{TOKEN_UID}/authorize?type=RFID"
    return Request("POST", url, routed_headers(routed.cpo_token, None if open_routed else EMSP, CPO), AUTHORIZE_BODY)


async def send(request: Request) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.request(request.method, request.url, headers=request.headers, content=request.body)


async def broadcast_token(routed: Routed, store: ObjectStore) -> None:
    """The eMSP broadcasts TOK1 (so the owner index learns it); returns once the store holds it."""
    before = (await store.counts())[ModuleID.TOKENS.value]
    url = f"{routed.hub_url}/ocpi/2.2.1/receiver/tokens/{EMSP[0]}/{EMSP[1]}/{TOKEN_UID}?type=RFID"
    reply = await send(Request("PUT", url, routed_headers(routed.emsp_token, HUB, EMSP), token(TOKEN_UID)))
    if reply.status_code != 200 or "accepted for" not in reply.json().get("status_message", ""):
        raise RuntimeError(f"token broadcast not accepted: {reply.text}")
    await _until_stored(store, ModuleID.TOKENS, before + 1, timeout=10.0)


async def check_get_all(request: Request, size: int) -> dict[str, Any]:
    """One GET All page before any load: 200, ``PAGE_LIMIT`` items, X-Total-Count = the store's size."""
    reply = await send(request)
    items = reply.json().get("data") if reply.status_code == 200 else None
    total = reply.headers.get("x-total-count")
    if not isinstance(items, list) or len(items) != PAGE_LIMIT or total != str(size):
        raise RuntimeError(f"GET All via Hub: HTTP {reply.status_code}, X-Total-Count {total}: {reply.text[:300]}")
    return {"items": len(items), "x_total_count": int(total), "link": "link" in reply.headers}


async def check_authorize(request: Request) -> str:
    """One authorization before any load: 200 and the stub's ALLOWED."""
    reply = await send(request)
    data = reply.json().get("data") if reply.status_code == 200 else None
    if not isinstance(data, dict) or data.get("allowed") != "ALLOWED":
        raise RuntimeError(f"authorize through the hub: HTTP {reply.status_code}: {reply.text[:300]}")
    return str(data["allowed"])


@dataclass(frozen=True, slots=True)
class Prepared:
    """A hub whose store holds ``store_size`` Locations and TOK1, and the requests run.py measures on it."""

    figures: dict[str, Any]
    get_all: Request
    authorize_to: Request
    authorize_open: Request


async def prepare(routed: Routed, *, smoke: bool, repeats: int, connections: int) -> Prepared:
    """(a) ``repeats`` apply-rate runs (medians), then the store topped up for (b) and TOK1 broadcast for (c)."""
    size = SMOKE_STORE_SIZE if smoke else STORE_SIZE
    pushes = SMOKE_APPLY_PUSHES if smoke else APPLY_PUSHES
    warmup = pushes // 10
    # Every run stores new Locations: with more repeats each run pushes fewer, so that the store never holds more
    # than the size GET All is measured on (--repeats 5 once made 10,200 and failed the check below).
    pushes = min(pushes, (size - warmup) // max(repeats, 1))
    async with hub_store(routed) as store:
        await apply_rate(routed, store, 0, warmup, connections)
        runs = [await apply_rate(routed, store, warmup + n * pushes, pushes, connections) for n in range(repeats)]
        have = (await store.counts())[ModuleID.LOCATIONS.value]
        started = time.perf_counter()
        added = await apply_all(store, (location_push(i) for i in range(have, size)), MEMORY_CONCURRENCY)
        fill_s = time.perf_counter() - started
        await broadcast_token(routed, store)
        counts = await store.counts()
    get_all = get_all_request(routed, size // 2)
    authorize_to, authorize_open = authorize_request(routed, False), authorize_request(routed, True)
    page = await check_get_all(get_all, size)
    allowed = [await check_authorize(authorize_to), await check_authorize(authorize_open)]
    median = {k: statistics.median(r[k] for r in runs) for k in ("stored_per_s", "answered_per_s")}
    figures: dict[str, Any] = {
        "apply": {
            "what": "broadcast Location PUTs (~2.5 KB, 3 EVSEs x 2 Connectors) from the CPO, OCPI-to ZZ/HUB, "
            "1 recipient (the eMSP; the stub answers the copy)",
            "stored_per_s_median": median["stored_per_s"],
            "answered_per_s_median": median["answered_per_s"],
            "runs": runs,
        },
        "store": {
            "locations": counts[ModuleID.LOCATIONS.value],
            "tokens": counts[ModuleID.TOKENS.value],
            "topped_up_in_process": added,
            "in_process_applies_per_s": round(added / fill_s) if added else None,
        },
        "get_all": {"request": f"GET {get_all.url.split('/ocpi', 1)[1]}", **page},
        "authorize": {"request": f"POST {authorize_to.url.split('/ocpi', 1)[1]}", "answers": allowed},
    }
    return Prepared(figures, get_all, authorize_to, authorize_open)


# -- (d) memory ----------------------------------------------------------------------------------------------


async def _used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def _measure_memory(
    redis: Redis, store: ObjectStore, warmup: list[ObjectPush], pushes: list[ObjectPush], per: int
) -> dict[str, Any]:
    """used_memory delta of storing ``pushes`` (after ``warmup``), and that scaled to ``per`` objects."""
    await apply_all(store, warmup, MEMORY_CONCURRENCY)
    before = await _used_memory(redis)
    started = time.perf_counter()
    await apply_all(store, pushes, MEMORY_CONCURRENCY)
    elapsed = time.perf_counter() - started
    delta = await _used_memory(redis) - before
    count = len(pushes)
    return {
        "measured_objects": count,
        "body_bytes_avg": round(sum(len(p.body) for p in pushes) / count),
        "used_memory_delta_mb": round(delta / 2**20, 2),
        "bytes_per_object": round(delta / count),
        f"mb_per_{per}": round(delta / count * per / 2**20, 1),
        "scaled": count != per,
        "in_process_applies_per_s": round(count / elapsed),
    }


async def memory(locations: int, tokens: int) -> dict[str, Any]:
    """(d): Redis memory of the store per 10,000 Locations and per 1,000,000 Tokens (see the module docstring)."""
    started = time.perf_counter()
    with running_redis() as url:
        redis = Redis.from_url(url)
        try:
            server = await redis.info("server")
            store = ObjectStore(redis, RegistryKeys(f"bench:memory:{uuid.uuid4().hex}:"))
            warm = range(MEMORY_CONCURRENCY)
            loc = await _measure_memory(
                redis,
                store,
                [location_push(i, WARMUP_OWNER) for i in warm],
                [location_push(i) for i in range(locations)],
                10_000,
            )
            tok = await _measure_memory(
                redis,
                store,
                [token_push(i, WARMUP_OWNER) for i in warm],
                [token_push(i) for i in range(tokens)],
                1_000_000,
            )
            allocator = (await redis.info("memory")).get("mem_allocator", "?")
        finally:
            await redis.aclose()
    return {
        "redis": f"{server.get('redis_version', '?')} ({allocator})",
        "locations": loc,
        "tokens": tok,
        "wall_s": round(time.perf_counter() - started, 2),
    }


def memory_sizes(smoke: bool) -> tuple[int, int]:
    return (SMOKE_MEMORY_LOCATIONS, SMOKE_MEMORY_TOKENS) if smoke else (MEMORY_LOCATIONS, MEMORY_TOKENS)


# -- alone ---------------------------------------------------------------------------------------------------


async def run_async(smoke: bool) -> dict[str, Any]:
    """(a)-(d) once each, without the interleaving of benchmarks/run.py."""
    seconds, connections = (0.5, 8) if smoke else (5.0, 64)
    started = time.perf_counter()
    with topology.stub() as stub_port:
        async with topology.hub(stub_port, workers=1) as hub:
            prepared = await prepare(hub, smoke=smoke, repeats=1, connections=connections)
            figures = prepared.figures
            page = run_load(prepared.get_all, connections, seconds, hub.hub_pids, prefer_wrk=False)
            direct = run_load(prepared.authorize_to, 1, seconds, hub.hub_pids, prefer_wrk=False)
            opened = run_load(prepared.authorize_open, 1, seconds, hub.hub_pids, prefer_wrk=False)
    figures["get_all"].update(rps=round(page.rps), p50_ms=round(page.p50_ms, 2), errors=page.errors)
    figures["authorize"].update(
        p50_ms_with_ocpi_to=round(direct.p50_ms, 3),
        p50_ms_open_routed=round(opened.p50_ms, 3),
        open_route_added_p50_ms=round(opened.p50_ms - direct.p50_ms, 3),
        errors=direct.errors + opened.errors,
    )
    figures["memory"] = await memory(*memory_sizes(smoke))
    return {"benchmark": "holdings", "smoke": smoke, **figures, "wall_s": round(time.perf_counter() - started, 2)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run_async("--smoke" in sys.argv[1:])), indent=2))
