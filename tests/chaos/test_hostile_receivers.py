"""Receivers that misbehave (issue "Hold under faults and hostile traffic", point 6.3): an in-process hub forwards to
a raw server (tests/support/hostile.py) that never answers, answers a byte at a time, breaks off, sends 100 MiB, or
sends headers nobody should pass on.

The requester always gets an honest answer: 4002 for a receiver too slow, 4003 for one that broke off or sent an
answer head too large to hold; an answer too large to hold is streamed in bounded memory, and when it breaks off
mid-stream the requester sees a broken connection, never a complete-looking body. A party's failure never puts a
traceback in the hub's log.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import httpx
import psutil
import pytest
import pytest_asyncio

from registry.connection import connect
from registry.keys import RegistryKeys
from registry.store import PartyStore
from tests.support.chaos import drop_keys
from tests.support.fake_party import FakeParty, wait_until
from tests.support.hostile import (
    Behaviour,
    HostileReceiver,
    answer,
    answer_head,
    cut_off,
    hang,
    ocpi_body,
    stall,
    stream,
    trickle,
)
from tests.support.hubs import RunningHub, connect_party, parties, running_hub

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CPO = ("NL", "CPO")
EMSP = ("BE", "EMP")
PATH = "/ocpi/2.2.1/sender/locations"
#: A module with the default 10 s forwarding timeout (the 100 MiB answers).
BIG = "/ocpi/2.2.1/sender/tariffs"
FORWARD_TIMEOUT = 1.0
MIB = 1024 * 1024


@dataclass
class World:
    hub: RunningHub
    receiver: HostileReceiver
    emsp: FakeParty
    client: httpx.AsyncClient

    async def get(self, path: str = PATH) -> httpx.Response:
        return await self.client.get(self.hub.url(path), headers=self.emsp.headers_to(CPO))

    def counted(self, outcome: str, module: str = "locations") -> float:
        labels = {"module": module, "interface": "SENDER", "outcome": outcome}
        return self.hub.metrics.get_sample_value("ocpihub_requests_total", labels) or 0.0

    async def counts_one_more(self, outcome: str, before: float, module: str = "locations") -> None:
        await wait_until(lambda: self.counted(outcome, module) == before + 1, 1.0, f'outcome="{outcome}" counted')


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(redis_url: str) -> AsyncIterator[World]:
    """The eMSP sends to a CPO whose module endpoints are the hostile receiver (its versions, details and
    credentials are honest, so it registers like anyone else); one hub for the module, each test sets the
    receiver's behaviour. Locations time out after 1 s; tariffs keep 10 s for the 100 MiB answers."""
    keys = RegistryKeys(prefix=f"test:{uuid.uuid4().hex}:")
    receiver = HostileReceiver()
    async with receiver.running(), connect(redis_url) as redis:
        store = PartyStore(redis, keys)
        cpo = FakeParty([(*CPO, "CPO")], name="cpo", module_base=receiver.base_url)
        emsp = FakeParty([(*EMSP, "EMSP")], name="emsp")
        timeouts = {"locations": FORWARD_TIMEOUT, "tokens": 5.0}
        try:
            async with (
                parties(cpo, emsp),
                running_hub(redis_url, keys, forward_timeout=10.0, forward_timeouts=timeouts) as hub,
                httpx.AsyncClient(timeout=30) as client,
            ):
                await connect_party(store, hub, cpo)
                await connect_party(store, hub, emsp)
                await hub.synced(store)
                yield World(hub, receiver, emsp, client)
        finally:
            await drop_keys(store, keys)


def tracebacks(records: list[logging.LogRecord]) -> list[str]:
    """ERROR records with a traceback: what a party's failure must never produce."""
    return [f"{r.name}: {r.getMessage()}" for r in records if r.levelno >= logging.ERROR and r.exc_info]


async def test_a_receiver_that_never_answers_is_4002_on_time(world: World) -> None:
    w = world
    w.receiver.behaviour = hang()
    before = w.counted("timeout")
    started = time.monotonic()
    reply = await w.get()
    took = time.monotonic() - started
    assert reply.status_code == 200 and reply.json()["status_code"] == 4002, reply.text
    assert FORWARD_TIMEOUT <= took < FORWARD_TIMEOUT + 0.3, took
    await w.counts_one_more("timeout", before)
    print(f"\nhanging receiver: 4002 after {took:.3f} s (forward timeout {FORWARD_TIMEOUT} s)")


TRICKLED = answer_head(200, [(b"content-type", b"application/json")], 200) + b"x" * 200


@pytest.mark.parametrize(
    "behaviour",
    [trickle(TRICKLED, 0.1), stall(TRICKLED[:-200])],
    ids=["head-and-body-a-byte-per-100ms", "body-never-comes"],
)
async def test_a_trickling_receiver_is_4002_not_a_truncated_200(world: World, behaviour: Behaviour) -> None:
    world.receiver.behaviour = behaviour
    started = time.monotonic()
    reply = await world.get()
    took = time.monotonic() - started
    assert reply.json()["status_code"] == 4002, reply.text
    assert took < FORWARD_TIMEOUT + 0.3, took


@pytest.mark.parametrize("reset", [False, True], ids=["fin", "rst"])
async def test_a_receiver_that_breaks_off_mid_body_is_4003_without_a_traceback(
    world: World, caplog: pytest.LogCaptureFixture, reset: bool
) -> None:
    caplog.set_level(logging.INFO)
    w = world
    w.receiver.behaviour = cut_off(declared=1000, sent=500, reset=reset)
    before = w.counted("unreachable")
    reply = await w.get()
    assert reply.status_code == 200 and reply.json()["status_code"] == 4003, reply.text
    await w.counts_one_more("unreachable", before)
    assert not tracebacks(caplog.records), tracebacks(caplog.records)


async def rss_while_reading(url: str, headers: dict[str, str]) -> tuple[int, int, BaseException | None]:
    """Read an answer's body as it streams, discarding it: (bytes read, peak RSS growth, how the read ended)."""
    process = psutil.Process()
    before = process.memory_info().rss
    peak = before
    received = 0
    failure: BaseException | None = None
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url, headers=headers) as reply:
        assert reply.status == 200, await reply.text()
        try:
            reads = 0
            async for chunk in reply.content.iter_chunked(256 * 1024):
                received += len(chunk)
                reads += 1
                if reads % 16 == 0:
                    peak = max(peak, process.memory_info().rss)
        except aiohttp.ClientPayloadError as exc:
            failure = exc
    return received, max(peak, process.memory_info().rss) - before, failure


async def test_a_100_mib_answer_streams_in_bounded_memory(world: World) -> None:
    w = world
    size = 100 * MIB
    assert size > w.hub.settings.max_buffered_answer
    w.receiver.behaviour = stream(size)
    started = time.monotonic()
    received, growth, failure = await rss_while_reading(w.hub.url(BIG), w.emsp.headers_to(CPO))
    took = time.monotonic() - started
    assert failure is None, failure
    assert received == size
    assert growth <= 50 * MIB, f"RSS grew by {growth / MIB:.1f} MiB while streaming 100 MiB"
    print(
        f"\n100 MiB answer: streamed in {took:.2f} s, the test process's RSS (hub included) grew {growth / MIB:.1f} MiB"
    )


async def test_an_answer_cut_off_mid_stream_is_a_broken_connection(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    w = world
    w.receiver.behaviour = stream(100 * MIB, cut_at=10 * MIB)
    before = w.counted("unreachable", "tariffs")
    received, _, failure = await rss_while_reading(w.hub.url(BIG), w.emsp.headers_to(CPO))
    await w.counts_one_more("unreachable", before, "tariffs")
    assert isinstance(failure, aiohttp.ClientPayloadError), f"read {received} bytes and then {failure!r}"
    assert received <= 10 * MIB
    assert not tracebacks(caplog.records), tracebacks(caplog.records)


#: What may reach the requester: OCPI's answer headers, its own ids, and what the hub's server adds itself.
ALLOWED = {
    "content-type",
    "content-encoding",
    "link",
    "x-total-count",
    "x-limit",
    "location",
    "ocpi-to-country-code",
    "ocpi-to-party-id",
    "ocpi-from-country-code",
    "ocpi-from-party-id",
    "x-request-id",
    "x-correlation-id",
    "date",
    "content-length",
    "transfer-encoding",
    "server",  # the in-process hub's uvicorn says "uvicorn" (`ocpi-hub serve` says nothing); never the receiver's
}
HOSTILE_HEADERS = [
    (b"Authorization", b"Token c2VjcmV0LW9mLXRoZS1jcG8="),
    (b"Set-Cookie", b"session=cpo-internal; HttpOnly"),
    (b"Server", b"cpo-backend/1.2.3 (internal)"),
    (b"WWW-Authenticate", b'Basic realm="cpo"'),
    (b"X-Powered-By", b"PHP/5.2"),
    (b"Via", b"1.1 cpo-internal-proxy"),
    (b"X-Internal-Route", b"10.0.0.7:8443"),
    (b"X-Huge", b"h" * 40_000),  # under the 64 KiB answer-head bound: read, then dropped
    (b"X-Request-ID", b"the-receivers-own"),
]


async def test_hostile_answer_headers_stay_behind(world: World) -> None:
    w = world
    body = ocpi_body([{"id": "L1"}])
    w.receiver.behaviour = answer(body, HOSTILE_HEADERS)
    headers = w.emsp.headers_to(CPO)
    reply = await w.client.get(w.hub.url(PATH), headers=headers)
    assert reply.status_code == 200 and reply.content == body
    names = {name.lower() for name in reply.headers}
    assert names <= ALLOWED, names - ALLOWED
    values = " ".join(reply.headers.values())
    leaked = [name.decode() for name, value in HOSTILE_HEADERS if value.decode() in values]
    assert not leaked, leaked
    assert reply.headers["x-request-id"] == headers["X-Request-ID"]


@pytest.mark.parametrize(
    "headers",
    [
        [(b"X-Filler-%d" % i, b"v") for i in range(1000)],
        [(b"X-Huge", b"h" * (100 * 1024))],
        [(b"X-Filler-%d" % i, b"v" * 900) for i in range(90)],  # 90 lines, 81 KiB in all
    ],
    ids=["1000-headers", "a-100-KiB-header", "81-KiB-of-headers"],
)
async def test_an_answer_head_too_large_to_hold_is_4003(
    world: World, headers: list[tuple[bytes, bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    w = world
    w.receiver.behaviour = answer(ocpi_body(), headers)
    reply = await w.get()
    assert reply.status_code == 200 and reply.json()["status_code"] == 4003, reply.text[:300]
    # The hub is not worse for it: the next answer is an ordinary one.
    w.receiver.behaviour = answer(ocpi_body())
    assert (await w.get()).json()["status_code"] == 1000
    assert not tracebacks(caplog.records), tracebacks(caplog.records)
