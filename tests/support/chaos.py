"""What the chaos suite measures with: /metrics and /readyz read as an operator reads them, steady load, latency
figures, hub processes and their workers, and parties set up on a registry.

Owns: small measuring tools that the tests in tests/chaos/ share. Must not: sleep to wait for a condition (a
steady load's pace is the only scripted sleep), or leave a process running: every process is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import psutil
from prometheus_client.parser import text_string_to_metric_families

from registry.keys import RegistryKeys
from registry.store import PartyStore
from routing.model import PartyRole
from tests.support.fake_party import FakeParty, token_header
from tests.support.hubs import TEST_ACTOR
from tests.support.processes import HubProcess, hub_env, hub_process, poll

T = TypeVar("T")


# -- what an operator sees -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metrics:
    """One /metrics scrape: samples by name and labels."""

    samples: tuple[tuple[str, tuple[tuple[str, str], ...], float], ...]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called ``name`` whose labels include ``labels`` (0 when there is none)."""
        wanted = set(labels.items())
        return sum(v for n, ls, v in self.samples if n == name and wanted <= set(ls))


async def scrape(client: httpx.AsyncClient, url: str) -> Metrics:
    reply = await client.get(url)
    assert reply.status_code == 200, reply.text
    samples = tuple(
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in text_string_to_metric_families(reply.text)
        for s in family.samples
    )
    return Metrics(samples)


@dataclass(frozen=True, slots=True)
class Readiness:
    status: int
    registry: str
    snapshot_version: int | None


async def readiness(client: httpx.AsyncClient, url: str) -> Readiness:
    reply = await client.get(url)
    body: dict[str, Any] = orjson.loads(reply.content)
    return Readiness(reply.status_code, str(body.get("registry")), body.get("snapshot_version"))


@dataclass
class ReadinessWatch:
    """/readyz read every ``interval`` while the block runs: every answer kept (an operator's probe)."""

    seen: list[tuple[float, Readiness | BaseException]] = field(default_factory=list)

    def failures(self) -> list[tuple[float, Readiness | BaseException]]:
        return [(t, r) for t, r in self.seen if isinstance(r, BaseException) or r.status != 200]


@asynccontextmanager
async def watching_readiness(url: str, interval: float = 0.05) -> AsyncIterator[ReadinessWatch]:
    watch = ReadinessWatch()

    async def probe() -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                try:
                    watch.seen.append((time.monotonic(), await readiness(client, url)))
                except httpx.HTTPError as exc:
                    watch.seen.append((time.monotonic(), exc))
                await asyncio.sleep(interval)  # a probe's period

    task = asyncio.create_task(probe())
    try:
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- load and latency ----------------------------------------------------------------------------------------------


@dataclass
class SteadyLoad:
    """Requests started every ``interval`` (each on its own, so a slow one does not slow the pace) until stopped."""

    send: Callable[[], Awaitable[Any]]
    interval: float
    results: list[Any] = field(default_factory=list)
    started: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _done: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def _one(self) -> None:
        try:
            result = await self.send()
        except Exception as exc:  # kept and judged by the test
            result = exc
        self.results.append(result)
        async with self._done:
            self._done.notify_all()

    async def run(self) -> None:
        while True:
            task = asyncio.create_task(self._one())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            self.started += 1
            await asyncio.sleep(self.interval)  # the load's pace

    async def answered(self, count: int, timeout: float) -> None:
        """Wait (bounded) until ``count`` requests have been answered in all."""
        async with asyncio.timeout(timeout), self._done:
            await self._done.wait_for(lambda: len(self.results) >= count)

    async def finish(self, timeout: float = 15.0) -> list[Any]:
        """Wait (bounded) for the requests still running; every result."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        return self.results


@asynccontextmanager
async def steady_load(send: Callable[[], Awaitable[Any]], interval: float) -> AsyncIterator[SteadyLoad]:
    load = SteadyLoad(send, interval)
    runner = asyncio.create_task(load.run())
    try:
        yield load
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await load.finish()


def percentile(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: Iterable[float]) -> float:
    return statistics.median(values)


async def timed(call: Awaitable[T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = await call
    return result, time.perf_counter() - started


# -- parties -------------------------------------------------------------------------------------------------------


async def declare(store: PartyStore, party: FakeParty) -> tuple[str, str]:
    """Declare the party's platform (as ``registry add`` does); its id and token A."""
    record, token_a = await store.declare(
        [PartyRole.parse(f"{cc}:{pid}:{role}") for cc, pid, role in party.roles], party.name, actor=TEST_ACTOR
    )
    return record.id, token_a


async def register_at(versions_url: str, party: FakeParty, token_a: str, timeout: float = 5.0) -> None:
    """Wait (bounded) until the hub accepts token A, then run the party's side of the credentials handshake."""
    async with httpx.AsyncClient(timeout=5) as client:

        async def accepted() -> bool:
            try:
                reply = await client.get(versions_url, headers={"Authorization": token_header(token_a)})
            except httpx.TransportError:
                return False
            return reply.status_code == 200

        await poll(accepted, timeout, f"the hub to accept the token A of {party.name}")
    reply = await party.register(versions_url, token_a)
    assert reply.status_code == 200 and reply.json()["status_code"] == 1000, reply.text


async def drop_keys(store: PartyStore, keys: RegistryKeys) -> None:
    """Delete this test's keys (its own hash tag), nothing else on the server."""
    async for key in store.redis.scan_iter(match="{" + keys.prefix.rstrip(":") + "}:*"):
        await store.redis.delete(key)


# -- hubs ----------------------------------------------------------------------------------------------------------

# -- hub processes -------------------------------------------------------------------------------------------------


def workers_of(pid: int) -> list[int]:
    """The uvicorn worker processes of ``ocpi-hub serve`` (spawned children; not multiprocessing's helpers)."""
    try:
        children = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            if any("spawn_main" in part for part in child.cmdline()):
                found.append(child.pid)
    return found


def listening_ports(pid: int) -> set[int]:
    """The TCP ports ``pid`` listens on."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return set()
    return {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN}


def serving_connections(pid: int, port: int) -> int:
    """How many established connections ``pid`` holds on its listening ``port`` (clients it serves)."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return 0
    return sum(1 for c in connections if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


def kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@asynccontextmanager
async def serving(
    log_dir: Path, keys: RegistryKeys, redis_url: str, *extra: str, name: str = "hub"
) -> AsyncIterator[HubProcess]:
    """``ocpi-hub serve`` on a listening socket handed over to it, with this test's key prefix, ready; stopped by its
    PID at the end, and any worker it leaves behind killed by its PID."""
    env = hub_env(key_prefix=keys.prefix)
    workers: list[int] = []
    async with hub_process("--redis-url", redis_url, *extra, env=env, log=log_dir / f"{name}.log", cwd=log_dir) as hub:
        try:
            await hub.wait_ready(20.0)
            yield hub
        finally:
            if hub.process.returncode is None:
                workers = workers_of(hub.pid)
    kill_all(pid for pid in workers if psutil.pid_exists(pid))
