"""The end-to-end benchmark topology on loopback: a private redis-server, fast stub parties, and hub or naive
proxy processes, with a CPO and an eMSP registered through the real credentials handshake.

Every process is started here and stopped by its PID.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import httpx
from redis.asyncio import Redis

from registry.keys import RegistryKeys
from registry.store import PartyStore
from routing.model import PartyRole
from tests.support.fake_party import FakeParty, token_header
from tests.support.processes import hub_env, ocpi_hub_executable
from tests.support.redis_server import free_port, running_redis

PYTHON = sys.executable


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


async def redis_calls(routed: Routed) -> int:
    """Commands the registry's Redis has processed so far (to show the hot path sends it none)."""
    redis = Redis.from_url(routed.redis_url)
    try:
        stats = await redis.info("stats")
    finally:
        await redis.aclose()
    return int(stats["total_commands_processed"])


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
async def hub(stub_port: int, workers: int = 1, redis_url: str | None = None, **settings: str) -> AsyncIterator[Routed]:
    """A hub with ``workers`` processes, a CPO and an eMSP registered whose endpoints are the stub."""
    with running_redis() if redis_url is None else _given(redis_url) as url:
        prefix = f"bench:{uuid.uuid4().hex}:"
        port = free_port()
        env = hub_env(key_prefix=prefix, **settings)
        redis = Redis.from_url(url)
        store = PartyStore(redis, RegistryKeys(prefix))
        stub_base = f"http://127.0.0.1:{stub_port}"
        cpo = FakeParty([("NL", "CPO", "CPO")], name="cpo", module_base=stub_base)
        emsp = FakeParty([("BE", "EMP", "EMSP")], name="emsp", module_base=stub_base)
        args = ("serve", "--redis-url", url, "--port", str(port), "--workers", str(workers))
        with process(_ocpi_hub(), *args, env=env) as child:
            await wait_http(f"http://127.0.0.1:{port}/readyz")
            async with cpo.running(), emsp.running():
                for party in (cpo, emsp):
                    cc, pid, role = party.roles[0]
                    _, token_a = await store.declare([PartyRole.parse(f"{cc}:{pid}:{role}")], party.name)
                    await wait_http(
                        f"http://127.0.0.1:{port}/ocpi/versions", headers={"Authorization": token_header(token_a)}
                    )
                    await _accepts(f"http://127.0.0.1:{port}/ocpi/versions", token_a)
                    reply = await party.register(f"http://127.0.0.1:{port}/ocpi/versions", token_a)
                    if reply.json().get("status_code") != 1000:
                        raise RuntimeError(f"registration failed: {reply.text}")
            pids = [child.pid, *_children(child.pid)]
            try:
                yield Routed(f"http://127.0.0.1:{port}", pids, emsp.hub_token, cpo.hub_token, url)
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
