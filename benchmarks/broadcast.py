"""Broadcast fan-out throughput: deliveries per second for pushes to 100 recipients (transport_and_format §4.1.8.3).

Measures: how fast a hub process sends the copies of broadcast pushes. One CPO sends K PUTs addressed to the hub
itself (OCPI-to ZZ/HUB, ``PUT /ocpi/2.2.1/receiver/locations/NL/CPO/LOC1`` with a 1.5 KB Location); each is
accepted at once and fanned out to 100 eMSP parties. Deliveries/s = K x 100 / the time from the first PUT
until the hub's ``ocpihub_broadcast_deliveries_total{module="locations"}`` (scraped from ``/metrics`` on the
admin listener, ``--admin-port`` on a free port, every 10 ms over one keep-alive connection) has counted every
copy. Also the hub's CPU seconds over that window
(psutil), per copy; they include the scrapes and accepting the K pushes.

How: a private redis-server (``tests.support.redis_server.running_redis``); the fast stub party
(``python -m benchmarks.stub_party``, ``benchmarks.topology.stub``) answers every copy; ``ocpi-hub serve
--log-level warning`` runs as a subprocess (so the load generator has its own event loop) and is stopped by
PID. Two ``tests.support.fake_party.FakeParty`` platforms register through the real credentials handshake:
the CPO, and one platform holding 100 EMSP parties whose module endpoints point at the stub (``module_base``);
they are served on IPPROTO_TCP sockets so their answers are not held back by Nagle (see ``running``).
Before the clock starts the ClientInfo pushes that registration sets off are waited out, so only the fan-out
is timed. Keys are deleted (this run's prefix only) afterwards.

K = 20 (smoke: 2). Run: ``python -m benchmarks.broadcast [--smoke]``.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import httpx
import orjson
from redis.asyncio import Redis

from benchmarks.stub_party import LOCATION
from benchmarks.topology import process, stub, wait_http
from registry.audit import Actor
from registry.keys import RegistryKeys
from registry.store import PartyStore
from routing.model import PartyRole
from tests.support.fake_party import FakeParty, token_header
from tests.support.processes import hub_env, ocpi_hub_executable
from tests.support.redis_server import free_port, running_redis
from tests.support.servers import serve

#: Who the test's registry changes are made by (audit events name an actor).
TEST_ACTOR = Actor.cli("test", "localhost")

RECIPIENTS: Final = 100
WORKERS: Final = 1
SCRAPE_INTERVAL: Final = 0.01
PATH: Final = "/ocpi/2.2.1/receiver/locations/NL/CPO/LOC1"
BODY: Final = orjson.dumps(LOCATION)
_DELIVERIES: Final = re.compile(
    rb'^ocpihub_broadcast_deliveries_total\{module="locations",outcome="(\w+)"\} ([0-9.e+]+)$', re.MULTILINE
)


async def deliveries(client: httpx.AsyncClient, base: str) -> dict[str, int]:
    """Location broadcast copies counted so far, by outcome."""
    text = (await client.get(base + "/metrics")).content
    return {m[1].decode(): int(float(m[2])) for m in _DELIVERIES.finditer(text)}


@asynccontextmanager
async def running(party: FakeParty) -> AsyncIterator[FakeParty]:
    """``FakeParty.running()`` on a socket made with IPPROTO_TCP.

    ``tests.support.servers.bound_socket`` makes its socket with protocol 0, so asyncio does not set TCP_NODELAY
    on the connections it accepts (``_set_nodelay`` checks ``sock.proto``) and every keep-alive answer written in
    two parts waits ~40 ms for a delayed ACK: the 200 ClientInfo pushes of a registration would take 9 s.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    async with serve(party.app(), sock, lifespan="off") as port:
        party.base_url = f"http://127.0.0.1:{port}"
        yield party


async def _register(store: PartyStore, base: str, party: FakeParty) -> None:
    """Declare the platform (as ``ocpi-hub registry add`` does) and let it register itself."""
    roles = [PartyRole.parse(f"{cc}:{pid}:{role}") for cc, pid, role in party.roles]
    _, token_a = await store.declare(roles, party.name, actor=TEST_ACTOR)
    await _accepted(base, token_a)
    reply = await party.register(base + "/ocpi/versions", token_a)
    if reply.status_code != 200 or reply.json().get("status_code") != 1000:
        raise RuntimeError(f"registration of {party.name} failed: {reply.text}")
    await _accepted(base, party.hub_token)


async def _accepted(base: str, token: str, timeout: float = 10.0) -> None:
    """Until the hub's snapshot knows ``token`` (several new connections, in case of several workers)."""
    deadline = time.monotonic() + timeout
    in_a_row = 0
    while in_a_row < 4 * WORKERS:
        async with httpx.AsyncClient() as client:
            reply = await client.get(base + "/ocpi/versions", headers={"Authorization": token_header(token)})
        in_a_row = in_a_row + 1 if reply.status_code == 200 else 0
        if time.monotonic() > deadline:
            raise RuntimeError("the hub did not accept a new token")
        await asyncio.sleep(0.01)


async def _settled(cpo: FakeParty, emsps: FakeParty, timeout: float = 15.0) -> bool:
    """Until the ClientInfo pushes of the registrations have arrived (they would share the hub's CPU)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connected = sum(1 for info in cpo.clientinfo.values() if info.get("status") == "CONNECTED")
        if connected >= RECIPIENTS and emsps.clientinfo:
            await asyncio.sleep(0.2)  # the last PUT's response and log line
            return True
        await asyncio.sleep(0.02)
    return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children so far."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for proc in (root, *root.children(recursive=True)):
        times = proc.cpu_times()
        total += times.user + times.system
    return total


async def fan_out(base: str, admin: str, hub_pid: int, cpo: FakeParty, pushes: int) -> dict[str, object]:
    """Send ``pushes`` broadcast PUTs to ``base`` and time until every copy is counted on ``admin``'s /metrics."""
    headers = cpo.headers_to(("ZZ", "HUB"))
    headers["Content-Type"] = "application/json"
    async with httpx.AsyncClient(timeout=30) as sender, httpx.AsyncClient(timeout=30) as scraper:
        before = await deliveries(scraper, admin)
        target = sum(before.values()) + pushes * RECIPIENTS
        cpu_before = cpu_seconds(hub_pid)
        started = time.perf_counter()
        for _ in range(pushes):
            reply = await sender.put(base + PATH, headers=headers, content=BODY)
            message = reply.json().get("status_message", "")
            if reply.status_code != 200 or f"accepted for {RECIPIENTS} recipients" not in message:
                raise RuntimeError(f"broadcast not accepted for {RECIPIENTS} recipients: {reply.text}")
        accepted = time.perf_counter() - started
        scrapes = 0
        while True:
            counts = await deliveries(scraper, admin)
            scrapes += 1
            if sum(counts.values()) >= target:
                break
            if time.perf_counter() - started > 60:
                raise RuntimeError(f"only {sum(counts.values())} of {target} copies counted after 60 s")
            await asyncio.sleep(SCRAPE_INTERVAL)
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(hub_pid) - cpu_before
    done = {k: v - before.get(k, 0) for k, v in counts.items() if v - before.get(k, 0)}
    ok = done.get("ok", 0)
    return {
        "pushes": pushes,
        "recipients": RECIPIENTS,
        "copies": pushes * RECIPIENTS,
        "outcomes": done,
        "accept_all_pushes_s": round(accepted, 4),
        "elapsed_s": round(elapsed, 4),
        "deliveries_per_s": round(ok / elapsed),
        "hub_cpu_s": round(cpu, 3),
        "hub_cpu_us_per_copy": round(cpu / (pushes * RECIPIENTS) * 1e6, 1),
        "scrapes": scrapes,
        "scrape_interval_s": SCRAPE_INTERVAL,
    }


async def run_async(smoke: bool) -> dict[str, object]:
    pushes = 2 if smoke else 20
    started = time.perf_counter()
    with running_redis() as url, stub() as stub_port:
        prefix = f"bench:broadcast:{uuid.uuid4().hex}:"
        redis = Redis.from_url(url)
        store = PartyStore(redis, RegistryKeys(prefix))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        admin_port = free_port()
        admin = f"http://127.0.0.1:{admin_port}"
        # /metrics is served on the admin listener only (every worker shares its port with SO_REUSEPORT).
        env = hub_env(key_prefix=prefix, admin_port=str(admin_port))
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        hub = ocpi_hub_executable()
        args = ("--redis-url", url, "--port", str(port), "--workers", str(WORKERS), "--log-level", "warning")
        stub_base = f"http://127.0.0.1:{stub_port}"
        cpo = FakeParty([("NL", "CPO", "CPO")], name="cpo", module_base=stub_base)
        emsps = FakeParty([("DE", f"E{i:02d}", "EMSP") for i in range(RECIPIENTS)], name="emsps", module_base=stub_base)
        try:
            with process(hub, "serve", *args, "--drain-time", "2", env=env) as child:
                await wait_http(base + "/readyz")
                async with running(cpo), running(emsps):
                    await _register(store, base, cpo)
                    await _register(store, base, emsps)
                    settled = await _settled(cpo, emsps)
                    figures = await fan_out(base, admin, child.pid, cpo, pushes)
        finally:
            async for key in redis.scan_iter(match="{" + prefix.rstrip(":") + "}:*"):
                await redis.delete(key)
            await redis.aclose()
    return {
        "benchmark": "broadcast",
        "smoke": smoke,
        "hub_workers": WORKERS,
        "clientinfo_settled_before_start": settled,
        **figures,
        "python": sys.version.split()[0],
        "wall_s": round(time.perf_counter() - started, 2),
    }


def run(smoke: bool = False) -> dict[str, object]:
    """Deliveries per second for K broadcast pushes to 100 recipients."""
    return asyncio.run(run_async(smoke))


if __name__ == "__main__":
    print(json.dumps(run(smoke="--smoke" in sys.argv[1:]), indent=2))
