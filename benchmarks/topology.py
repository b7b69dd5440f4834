"""The end-to-end benchmark topology on loopback: a private redis-server, fast stub parties, and hub or naive
proxy processes, with a CPO (NL/CPO) and an eMSP (BE/EMP) registered through the real credentials handshake;
and ``RedisMeter``, which counts the commands a hub sends its Redis, per command (INFO commandstats).

Every process is started here and stopped by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Final

import httpx
from redis.asyncio import Redis

from registry.audit import Actor
from registry.keys import RegistryKeys
from registry.store import PartyStore
from routing.model import PartyRole
from tests.support.fake_party import FakeParty, token_header
from tests.support.processes import hub_env, ocpi_hub_executable
from tests.support.redis_server import free_port, running_redis

#: Who the test's registry changes are made by (audit events name an actor).
TEST_ACTOR = Actor.cli("test", "localhost")

PYTHON = sys.executable
CPO: Final = ("NL", "CPO")
EMSP: Final = ("BE", "EMP")
HUB: Final = ("ZZ", "HUB")


@contextmanager
def process(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, silenced, stopped by its PID (SIGTERM, then SIGKILL) when the block ends."""
    child = subprocess.Popen(
        args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


async def wait_http(url: str, timeout: float = 20.0, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url, headers=headers)).status_code < 500:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up")
            await asyncio.sleep(0.05)


def wait_port(port: int, timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {port} did not open") from None
            time.sleep(0.02)


@dataclass
class Routed:
    """What a load generator needs to send routed requests through a hub."""

    hub_url: str
    hub_pids: list[int]
    emsp_token: str
    cpo_token: str
    redis_url: str
    #: The hub's OCPI_HUB_KEY_PREFIX (its registry, store of broadcast data and owner index live under it).
    key_prefix: str


def routed_headers(token: str, to: tuple[str, str] | None, sender: tuple[str, str]) -> dict[str, str]:
    """A party's request headers through the hub; ``to=None`` leaves OCPI-to-* out (open routing)."""
    headers = {
        "Authorization": token_header(token),
        "OCPI-from-country-code": sender[0],
        "OCPI-from-party-id": sender[1],
        "X-Request-ID": "bench-request",
        "X-Correlation-ID": "bench-correlation",
        "Content-Type": "application/json",
    }
    if to is not None:
        headers["OCPI-to-country-code"] = to[0]
        headers["OCPI-to-party-id"] = to[1]
    return headers


@dataclass
class RedisMeter:
    """Commands one hub's Redis processes, per command, beyond the background rate measured while idle.

    The hub has that Redis to itself (``hub`` starts a private redis-server per hub), so every command counted
    is the hub's (snapshot polls, lease, liveness, batched writes). The meter's own reading is one INFO, which
    Redis counts by the next reading: one INFO less per interval. Its connection is made before the first.
    """

    url: str
    idle_per_s: dict[str, float] = field(default_factory=dict)
    _redis: Redis | None = None

    async def calls(self) -> dict[str, int]:
        """Calls so far, by lower-case command name (INFO commandstats)."""
        if self._redis is None:
            self._redis = Redis.from_url(self.url)
        stats = await self._redis.info("commandstats")
        return {
            str(name).removeprefix("cmdstat_").lower(): int(value["calls"])
            for name, value in stats.items()
            if isinstance(value, dict)
        }

    def set_idle(self, before: dict[str, int], after: dict[str, int], seconds: float) -> None:
        self.idle_per_s = {k: v / seconds for k, v in _delta(before, after).items()}

    def beyond_idle(self, before: dict[str, int], after: dict[str, int], seconds: float) -> dict[str, float]:
        """Commands between two readings ``seconds`` apart, less what the idle rate accounts for."""
        seen = _delta(before, after)
        names = set(seen) | set(self.idle_per_s)
        return {k: seen.get(k, 0) - self.idle_per_s.get(k, 0.0) * seconds for k in names}

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Calls between two readings, less the one INFO of the earlier reading."""
    seen = {k: v - before.get(k, 0) for k, v in after.items()}
    seen["info"] = seen.get("info", 0) - 1
    return {k: v for k, v in seen.items() if v}


@contextmanager
def stub(port: int | None = None) -> Iterator[int]:
    port = port or free_port()
    with process(PYTHON, "-m", "benchmarks.stub_party", str(port)):
        wait_port(port)
        yield port


@contextmanager
def naive_proxy(upstream_port: int, workers: int = 1) -> Iterator[tuple[int, int]]:
    port = free_port()
    with process(
        PYTHON, "-m", "benchmarks.naive_proxy", str(port), f"http://127.0.0.1:{upstream_port}", str(workers)
    ) as child:
        wait_port(port)
        yield port, child.pid


@asynccontextmanager
async def hub(
    stub_port: int,
    workers: int = 1,
    redis_url: str | None = None,
    *,
    settings: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> AsyncIterator[Routed]:
    """A hub with ``workers`` processes, a CPO and an eMSP registered whose endpoints are the stub; ``settings``
    by name (key_prefix → OCPI_HUB_KEY_PREFIX), ``extra_env`` added to its environment (benchmarks/ablation.py)."""
    with running_redis() if redis_url is None else _given(redis_url) as url:
        prefix = f"bench:{uuid.uuid4().hex}:"
        port = free_port()
        env = hub_env(key_prefix=prefix, **(settings or {})) | dict(extra_env or {})
        redis = Redis.from_url(url)
        store = PartyStore(redis, RegistryKeys(prefix))
        stub_base = f"http://127.0.0.1:{stub_port}"
        cpo = FakeParty([(*CPO, "CPO")], name="cpo", module_base=stub_base)
        emsp = FakeParty([(*EMSP, "EMSP")], name="emsp", module_base=stub_base)
        args = ("serve", "--redis-url", url, "--port", str(port), "--workers", str(workers))
        with process(_ocpi_hub(), *args, env=env) as child:
            await wait_http(f"http://127.0.0.1:{port}/readyz")
            async with cpo.running(), emsp.running():
                for party in (cpo, emsp):
                    cc, pid, role = party.roles[0]
                    _, token_a = await store.declare(
                        [PartyRole.parse(f"{cc}:{pid}:{role}")], party.name, actor=TEST_ACTOR
                    )
                    await wait_http(
                        f"http://127.0.0.1:{port}/ocpi/versions", headers={"Authorization": token_header(token_a)}
                    )
                    await _accepts(f"http://127.0.0.1:{port}/ocpi/versions", token_a)
                    reply = await party.register(f"http://127.0.0.1:{port}/ocpi/versions", token_a)
                    if reply.json().get("status_code") != 1000:
                        raise RuntimeError(f"registration failed: {reply.text}")
            pids = [child.pid, *_children(child.pid)]
            try:
                yield Routed(f"http://127.0.0.1:{port}", pids, emsp.hub_token, cpo.hub_token, url, prefix)
            finally:
                async for key in redis.scan_iter(match="{" + prefix.rstrip(":") + "}:*"):
                    await redis.delete(key)
                await redis.aclose()


async def _accepts(url: str, token: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while (await client.get(url, headers={"Authorization": token_header(token)})).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the hub did not accept the new platform")
            await asyncio.sleep(0.02)


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


def _ocpi_hub() -> str:
    return ocpi_hub_executable()


def _children(pid: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(pid).children(recursive=True)]


@contextmanager
def dedicated_core(pids: list[int]) -> Iterator[bool]:
    """While the block runs, ``pids`` (the process measured) on CPU 0 and every other process this benchmark
    started, itself and the load generators it starts included, on the other CPUs: what one process costs, without
    the noise of sharing its core. Yields False (and changes nothing) on a machine with one CPU."""
    import psutil

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        yield False
        return
    me = psutil.Process()
    others = [p for p in me.children(recursive=True) if p.pid not in pids]
    measured = [psutil.Process(pid) for pid in pids]
    try:
        for proc in measured:
            proc.cpu_affinity([cpus[0]])
        for proc in [me, *others]:
            with contextlib.suppress(psutil.Error):
                proc.cpu_affinity(cpus[1:])
        yield True
    finally:
        for proc in [me, *others, *measured]:
            with contextlib.suppress(psutil.Error):
                proc.cpu_affinity(cpus)
