"""Senders that misbehave (issue "Hold under faults and hostile traffic", point 6.4), against a real ``ocpi-hub
serve`` process with ``--head-timeout 1``, on raw sockets: header floods, slowloris and idle connections, request
smuggling shapes and paths that try to leave the endpoint they address.

Each is refused before it costs the hub more than its bound — 431/408/400 with an OCPI envelope, or a silent close
for a connection that never asked anything — nothing of it reaches the receiver (checked on the receiver's raw
socket, after an honest request that does arrive), and an honest sender's requests meanwhile take at most 0.5 s
longer than before.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from registry.connection import connect
from registry.keys import RegistryKeys
from registry.store import PartyStore
from tests.support.chaos import declare, drop_keys, median, register_at, serving
from tests.support.fake_party import FakeParty
from tests.support.hostile import (
    HostileReceiver,
    RawAnswer,
    answer,
    closed_within,
    exchange,
    ocpi_body,
    read_answer,
    request_bytes,
)
from tests.support.hubs import parties
from tests.support.processes import HubProcess

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CPO = ("NL", "CPO")
EMSP = ("BE", "EMP")
HEAD_TIMEOUT = 1.0
#: How late a refusal on a timer may come on a loaded 2-core machine.
SLACK = 0.5
#: The most an honest request may slow down while the hub fends off an attack.
ADDED = 0.5


@dataclass
class World:
    hub: HubProcess
    receiver: HostileReceiver
    emsp: FakeParty
    client: httpx.AsyncClient
    #: X-Correlation-IDs of the honest requests sent so far: the only requests the receiver may get.
    honest_ids: set[str] = field(default_factory=set)

    @property
    def port(self) -> int:
        return self.hub.port

    def headers(self) -> list[tuple[str, str]]:
        return list(self.emsp.headers_to(CPO).items())

    async def honest(self) -> float:
        """One honest routed request; its latency."""
        headers = self.emsp.headers_to(CPO)
        self.honest_ids.add(headers["X-Correlation-ID"])
        started = time.perf_counter()
        reply = await self.client.get(self.hub.url("/ocpi/2.2.1/sender/locations"), headers=headers)
        assert reply.status_code == 200 and reply.json()["status_code"] == 1000, reply.text
        return time.perf_counter() - started

    async def nothing_forwarded(self, since: int) -> None:
        """Nothing but honest requests reached the receiver since it had ``since`` requests: an honest request
        sent now arrives last (a positive signal, not a wait for silence) and everything before it was honest."""
        marker = uuid.uuid4().hex
        self.honest_ids.add(marker)
        headers = self.emsp.headers_to(CPO) | {"X-Correlation-ID": marker}
        reply = await self.client.get(self.hub.url("/ocpi/2.2.1/sender/locations"), headers=headers)
        assert reply.json()["status_code"] == 1000
        await self.receiver.wait_requests(since + 1)
        arrived = self.receiver.requests[since:]
        assert arrived[-1].header("x-correlation-id") == marker
        others = [(r.method, r.target) for r in arrived if r.header("x-correlation-id") not in self.honest_ids]
        assert not others, f"forwarded: {others}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    keys = RegistryKeys(prefix=f"test:{uuid.uuid4().hex}:")
    receiver = HostileReceiver(answer(ocpi_body([{"id": "L1"}])))
    async with receiver.running(), connect(redis_url) as redis:
        store = PartyStore(redis, keys)
        cpo = FakeParty([(*CPO, "CPO")], name="cpo", module_base=receiver.base_url)
        emsp = FakeParty([(*EMSP, "EMSP")], name="emsp")
        log_dir: Path = tmp_path_factory.mktemp("senders")
        try:
            async with (
                parties(cpo, emsp),
                serving(log_dir, keys, redis_url, "--head-timeout", str(HEAD_TIMEOUT)) as hub,
                httpx.AsyncClient(timeout=10) as client,
            ):
                for party in (cpo, emsp):
                    _, token_a = await declare(store, party)
                    await register_at(hub.versions_url, party, token_a)
                yield World(hub, receiver, emsp, client)
        finally:
            await drop_keys(store, keys)


async def while_probing(w: World, attack: Awaitable[object]) -> tuple[float, list[float], object]:
    """Honest requests one after another while ``attack`` runs (at least 10): (baseline median, latencies during,
    what the attack returned)."""
    baseline = median([await w.honest() for _ in range(10)])
    task = asyncio.ensure_future(attack)
    during: list[float] = []
    while not task.done() or len(during) < 10:
        during.append(await w.honest())
    return baseline, during, await task


# -- header floods -------------------------------------------------------------------------------------------------


async def flood(port: int, head: bytes, pieces: int, piece: bytes, tail: bytes) -> RawAnswer | str:
    """Send ``head``, ``pieces`` times ``piece``, ``tail`` as fast as the hub takes them while reading its answer; the
    answer, or what happened instead. Sending and reading are separate (a failed send must not discard what was
    received, as an asyncio transport would)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))

    async def send() -> None:
        with contextlib.suppress(OSError):
            await loop.sock_sendall(sock, head)
            for _ in range(pieces):
                await loop.sock_sendall(sock, piece)
            await loop.sock_sendall(sock, tail)

    sender = asyncio.create_task(send())
    received = bytearray()
    ended = "closed"
    try:
        async with asyncio.timeout(10):
            while chunk := await loop.sock_recv(sock, 65536):
                received += chunk
    except OSError as exc:
        ended = repr(exc)
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        sock.close()
    if not received:
        return f"nothing received; {ended}"
    reader = asyncio.StreamReader()
    reader.feed_data(bytes(received))
    reader.feed_eof()
    return await read_answer(reader)


FloodShape = Callable[[World], tuple[bytes, int, bytes, bytes]]


def thousand_headers(w: World) -> tuple[bytes, int, bytes, bytes]:
    head = request_bytes("GET", "/ocpi/2.2.1/sender/locations", w.headers())[:-2]
    return head, 1000, b"x-filler: v\r\n", b"\r\n"


def eight_mib_head(w: World) -> tuple[bytes, int, bytes, bytes]:
    head = request_bytes("GET", "/ocpi/2.2.1/sender/locations", w.headers())[:-2]
    return head, 1024, b"x-filler: " + b"v" * 8000 + b"\r\n", b"\r\n"  # 1,024 lines under the line bound


def one_48_mib_header(w: World) -> tuple[bytes, int, bytes, bytes]:
    head = request_bytes("GET", "/ocpi/2.2.1/sender/locations", w.headers())[:-2] + b"x-big: "
    return head, 768, b"a" * 65536, b"\r\n\r\n"


@pytest.mark.parametrize("shape", [thousand_headers, eight_mib_head, one_48_mib_header])
async def test_header_floods_are_431_and_cost_others_little(world: World, shape: FloodShape) -> None:
    w = world
    since = len(w.receiver.requests)

    async def attack() -> list[RawAnswer | str]:
        return await asyncio.gather(*(flood(w.port, *shape(w)) for _ in range(8)))

    baseline, during, outcome = await while_probing(w, attack())
    assert isinstance(outcome, list)
    refused = [a for a in outcome if isinstance(a, RawAnswer) and a.status == 431]
    assert len(refused) == len(outcome), [a if isinstance(a, str) else a.status for a in outcome]
    assert all(a.json()["status_code"] == 2001 for a in refused)
    assert max(during) - baseline <= ADDED, f"baseline {baseline * 1000:.1f} ms, worst {max(during) * 1000:.1f} ms"
    await w.nothing_forwarded(since)
    print(
        f"\n{shape.__name__} x8: all 431; honest requests baseline {baseline * 1000:.1f} ms, "
        f"worst during {max(during) * 1000:.1f} ms"
    )


# -- slow and silent clients ---------------------------------------------------------------------------------------


async def slowloris(port: int, data: bytes) -> tuple[bytes, float]:
    """One byte every 100 ms; what the hub sent back before it closed, and when it closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()

    async def dribble() -> None:
        with contextlib.suppress(ConnectionError):
            for byte in data:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)  # the attacker's pace

    sender = asyncio.create_task(dribble())
    try:
        raw = await closed_within(reader, HEAD_TIMEOUT + 5)
        return raw, time.monotonic() - started
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        writer.transport.abort()


async def idle(port: int) -> tuple[bytes, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        return await closed_within(reader, HEAD_TIMEOUT + 5), time.monotonic() - started
    finally:
        writer.transport.abort()


async def test_slowloris_and_idle_connections_are_closed_at_the_head_timeout(world: World) -> None:
    w = world
    since = len(w.receiver.requests)
    data = request_bytes("GET", "/ocpi/2.2.1/sender/locations", w.headers())

    async def attack() -> tuple[list[tuple[bytes, float]], list[tuple[bytes, float]]]:
        slow = asyncio.gather(*(slowloris(w.port, data) for _ in range(50)))
        silent = asyncio.gather(*(idle(w.port) for _ in range(50)))
        return await slow, await silent

    baseline, during, outcome = await while_probing(w, attack())
    assert isinstance(outcome, tuple)
    slow, silent = outcome
    for raw, took in slow:
        assert raw.startswith(b"HTTP/1.1 408 "), raw[:200]
        assert b'"status_code":2000' in raw
        assert HEAD_TIMEOUT - 0.05 <= took <= HEAD_TIMEOUT + SLACK, took
    for raw, took in silent:
        assert raw == b""  # nothing asked, nothing answered: closed
        assert HEAD_TIMEOUT - 0.05 <= took <= HEAD_TIMEOUT + SLACK, took
    assert max(during) - baseline <= ADDED, f"baseline {baseline * 1000:.1f} ms, worst {max(during) * 1000:.1f} ms"
    await w.nothing_forwarded(since)
    worst = max(t for _, t in (*slow, *silent))
    print(f"\n50 slowloris + 50 idle: closed within {worst:.2f} s; honest worst {max(during) * 1000:.1f} ms")


# -- request smuggling ---------------------------------------------------------------------------------------------

SMUGGLED = b"GET /ocpi/2.2.1/sender/locations/SMUGGLED HTTP/1.1\r\nHost: hub\r\n\r\n"


def smuggling_shapes(w: World) -> dict[str, bytes]:
    put = "/ocpi/2.2.1/receiver/locations/BE/EMP/L1"
    h = w.headers()
    body = b'{"id":"L1"}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    return {
        "content-length-and-transfer-encoding": request_bytes(
            "PUT",
            put,
            [*h, ("Content-Length", str(len(chunked))), ("Transfer-Encoding", "chunked")],
            chunked + SMUGGLED,
        ),
        "transfer-encoding-and-content-length": request_bytes(
            "PUT", put, [*h, ("Transfer-Encoding", "chunked"), ("Content-Length", "4")], chunked + SMUGGLED
        ),
        "two-content-lengths": request_bytes(
            "PUT", put, [*h, ("Content-Length", str(len(body))), ("Content-Length", "0")], body + SMUGGLED
        ),
        "obs-fold": request_bytes("PUT", put, [*h, ("Content-Length", str(len(body))), ("X-Folded", "a\r\n b")], body),
        "obs-fold-of-content-length": request_bytes(
            "PUT", put, [*h, ("Content-Length", "0\r\n " + str(len(body)))], body + SMUGGLED
        ),
        "transfer-encoding-chunked-not-last": request_bytes(
            "PUT", put, [*h, ("Transfer-Encoding", "chunked, identity")], chunked + SMUGGLED
        ),
    }


SMUGGLING = [
    "content-length-and-transfer-encoding",
    "transfer-encoding-and-content-length",
    "two-content-lengths",
    "obs-fold",
    "obs-fold-of-content-length",
    "transfer-encoding-chunked-not-last",
]


@pytest.mark.parametrize("shape", SMUGGLING)
async def test_request_smuggling_shapes_are_400_and_nothing_is_forwarded(world: World, shape: str) -> None:
    w = world
    since = len(w.receiver.requests)
    reply = await exchange(w.port, smuggling_shapes(w)[shape])
    assert reply.status == 400, (reply.status, reply.body[:300])
    assert reply.json()["status_code"] == 2001
    await w.nothing_forwarded(since)


# -- paths that try to leave the endpoint --------------------------------------------------------------------------

TRAVERSALS = [
    "/..;/credentials",
    "/L1/..;/..;/credentials",
    "/L1%00",
    "/L1%00/../credentials",
    "/%252e%252e/credentials",
    "/%2e%2e/credentials",
    "/%2E%2e/credentials",
    "/.%2e/credentials",
    "/L1//EVSE1",
    "///credentials",
    "/L1/%2f..%2fcredentials",
    "/L1%5c..%5ccredentials",
]


@pytest.mark.parametrize("suffix", TRAVERSALS)
async def test_paths_that_could_leave_the_endpoint_are_2001_and_nothing_is_forwarded(world: World, suffix: str) -> None:
    w = world
    since = len(w.receiver.requests)
    reply = await exchange(w.port, request_bytes("GET", "/ocpi/2.2.1/sender/locations" + suffix, w.headers()))
    forwarded = [r.target for r in w.receiver.requests[since:]]
    assert reply.status == 400, f"HTTP {reply.status} {reply.body[:200]!r}; the receiver got {forwarded}"
    assert reply.json()["status_code"] == 2001
    await w.nothing_forwarded(since)
