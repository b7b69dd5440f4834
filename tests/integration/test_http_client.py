"""hub/http/ (client.py, pool.py, connection.py) against real servers on loopback: framing, keep-alive, stale
connections, timeouts, pool limits and fairness, pending caps, the guards on what the hub sends and accepts (URLs,
answer heads, write-side flow control), the idle cleanup timer, the network policy at connect time, and TLS.

Most servers here are raw ``asyncio.start_server`` scripts (``ScriptedServer``) that write the response byte by
byte, so each test controls framing, timing and when a connection closes; ``call_json`` also runs against a
Starlette app on uvicorn, and TLS against a loopback server with a ``trustme`` certificate. Each test counts what
the server saw (accepted connections, requests, concurrency) and checks the ``Pool`` bookkeeping afterwards,
because a leaked slot, a leaked pending count or a wrongly reused connection only shows up on the next request.
Negative checks ("no connection was made") wait on a positive signal first — a later request that did arrive, a
counter — never on a sleep. A few scenarios also run on uvloop, the event loop the hub runs on in production.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from hub.http import client as client_module
from hub.http import pool as pool_module
from hub.http.client import SWEEP_INTERVAL, Outbound, Upstream
from hub.http.connection import HIGH_WATER, MAX_ANSWER_HEAD, MAX_ANSWER_HEADERS, WRITE_PIECE, Connection
from hub.http.policy import NetworkPolicy
from hub.http.pool import Pool
from routing.errors import (
    ClientApiError,
    ForwardTimeoutError,
    OverloadedError,
    ReceiverUnreachableError,
)
from tests.support.fake_party import wait_until
from tests.support.servers import bound_socket, serve
from tests.support.tls import TlsFiles, self_signed

pytestmark = pytest.mark.integration

#: How late a 4002 may come: the sweeper's period plus scheduling slack on a loaded machine.
LATENESS = 0.1
#: The most one read of an asyncio stream transport delivers (selector_events' max_size).
READ_SIZE = 256 * 1024
#: Where the scripted servers live; the default policy refuses it (SSRF), so every test allows it explicitly.
LOOPBACK = NetworkPolicy.from_cidrs(["127.0.0.0/8", "::1/128"])
#: A request body the loopback socket buffers cannot absorb (they take about 4 MiB here).
UNREAD_BODY = 16 * 1024 * 1024
#: The event loops a scenario runs on when it runs on both: asyncio's default and uvloop (production).
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


# -- a scripted HTTP/1.1 server ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the server read it off the wire."""

    request_line: str
    headers: list[tuple[str, str]]  # names and values exactly as sent, in order
    body: bytes
    connection: int  # which accepted connection (0-based) carried it

    @property
    def method(self) -> str:
        return self.request_line.split(" ", 1)[0]

    @property
    def target(self) -> str:
        return self.request_line.split(" ")[1]

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name]


class Peer:
    """One accepted connection, as a script drives it."""

    def __init__(
        self, server: ScriptedServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.index = index

    async def request(self) -> Received | None:
        """The next request on this connection (body read by Content-Length); None when the client closed it."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lines = head[:-4].decode("latin-1").split("\r\n")
        headers = [(n, v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
        length = sum(int(v) for n, v in headers if n.lower() == "content-length")
        body = await self.reader.readexactly(length) if length else b""
        received = Received(lines[0], headers, body, self.index)
        self.server.requests.append(received)
        return received

    async def request_head(self) -> Received:
        """The next request's head only: its body is left unread (a receiver that does not read)."""
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        headers = [(n, v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
        received = Received(lines[0], headers, b"", self.index)
        self.server.requests.append(received)
        return received

    def send(self, *parts: bytes) -> None:
        for part in parts:
            self.writer.write(part)

    async def flush(self) -> None:
        await self.writer.drain()

    async def until_client_closes(self) -> None:
        """Hold the connection (reading and discarding) until the client ends it."""
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionError:
            pass

    async def hold(self) -> None:
        """Keep the connection open without reading anything more, until the server stops."""
        await asyncio.Event().wait()

    def close(self) -> None:
        """FIN, the way a server ends a connection whose keep-alive timer fired."""
        self.writer.close()


Script = Callable[[Peer], Awaitable[None]]
Responder = Callable[[Peer, Received], Awaitable[None]]


class ScriptedServer:
    """``asyncio.start_server`` on 127.0.0.1:0 running ``script`` once per accepted connection, with counters."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.port = 0
        self.accepted = 0
        self.active = 0
        self.max_active = 0
        self.finished = 0
        #: Loop time at which each script ended (the client closed, or the script did).
        self.finished_at: list[float] = []
        self.requests: list[Received] = []
        self.failures: list[BaseException] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        index = self.accepted
        self.accepted += 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await self.script(Peer(self, reader, writer, index))
        except asyncio.CancelledError:
            pass  # teardown of a script still holding its connection
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the client went away mid-script: several scenarios do exactly that
        except Exception as exc:  # an assertion inside a script: the fixture reports it
            self.failures.append(exc)
        finally:
            self.active -= 1
            self.finished += 1
            self.finished_at.append(asyncio.get_running_loop().time())
            writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()  # close() would wait for a stalled write buffer to drain
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


@asynccontextmanager
async def scripted(script: Script, tls: ssl.SSLContext | None = None) -> AsyncIterator[ScriptedServer]:
    """A running ``ScriptedServer``; its scripts' failures fail the test."""
    server = ScriptedServer(script, tls)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
    assert not server.failures, f"server scripts failed: {server.failures!r}"


def response(
    body: bytes = b"ok", status: str = "200 OK", headers: Sequence[tuple[bytes, bytes]] = (), version: bytes = b"1.1"
) -> bytes:
    """A complete Content-Length response."""
    head = b"HTTP/%s %s\r\ncontent-length: %d\r\n" % (version, status.encode(), len(body))
    head += b"".join(b"%s: %s\r\n" % (n, v) for n, v in headers)
    return head + b"\r\n" + body


def looping(responder: Responder) -> Script:
    """A keep-alive script: answer every request on the connection with ``responder`` until the client closes."""

    async def script(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            await responder(peer, request)

    return script


def answering(body: bytes = b"ok", delay: float = 0.0) -> Script:
    """Keep-alive: answer each request with ``body`` (Content-Length), after ``delay`` seconds."""

    async def respond(peer: Peer, _request: Received) -> None:
        if delay:
            await asyncio.sleep(delay)
        peer.send(response(body))
        await peer.flush()

    return looping(respond)


def gated(gate: asyncio.Event, body: bytes = b"ok") -> Script:
    """Keep-alive: answer each request with its target (or ``body``) once ``gate`` is set."""

    async def respond(peer: Peer, request: Received) -> None:
        await gate.wait()
        peer.send(response(body or request.target.encode()))
        await peer.flush()

    return looping(respond)


class StartServer(Protocol):
    async def __call__(self, script: Script, tls: ssl.SSLContext | None = None) -> ScriptedServer: ...


class MakeOutbound(Protocol):
    def __call__(
        self,
        *,
        per_host: int = 4,
        max_connections: int = 64,
        connect_timeout: float = 1.0,
        policy: NetworkPolicy = LOOPBACK,
        max_pending: int | None = None,
        max_pending_per_sender: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Outbound: ...


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    servers: list[ScriptedServer] = []

    async def start(script: Script, tls: ssl.SSLContext | None = None) -> ScriptedServer:
        server = ScriptedServer(script, tls)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()
    failures = [failure for server in servers for failure in server.failures]
    assert not failures, f"server scripts failed: {failures!r}"


def new_outbound(
    *,
    per_host: int = 4,
    max_connections: int = 64,
    connect_timeout: float = 1.0,
    policy: NetworkPolicy = LOOPBACK,
    max_pending: int | None = None,
    max_pending_per_sender: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Outbound:
    return Outbound(
        max_connections=max_connections,
        per_host=per_host,
        connect_timeout=connect_timeout,
        policy=policy,
        max_pending=max_pending,
        max_pending_per_sender=max_pending_per_sender,
        ssl_context=ssl_context,
    )


async def close_outbound(outbound: Outbound) -> None:
    await outbound.close()
    for _ in range(3):  # let aborted transports run connection_lost and close their sockets
        await asyncio.sleep(0)


@pytest.fixture
async def make_outbound() -> AsyncIterator[MakeOutbound]:
    made: list[Outbound] = []

    def make(
        *,
        per_host: int = 4,
        max_connections: int = 64,
        connect_timeout: float = 1.0,
        policy: NetworkPolicy = LOOPBACK,
        max_pending: int | None = None,
        max_pending_per_sender: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Outbound:
        outbound = new_outbound(
            per_host=per_host,
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            policy=policy,
            max_pending=max_pending,
            max_pending_per_sender=max_pending_per_sender,
            ssl_context=ssl_context,
        )
        made.append(outbound)
        return outbound

    yield make
    for outbound in made:
        await close_outbound(outbound)


@pytest.fixture
def outbound(make_outbound: MakeOutbound) -> Outbound:
    return make_outbound()


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port bound on loopback but not listening, held for the test: connecting to it is refused."""
    sock = bound_socket()
    yield sock.getsockname()[1]
    sock.close()


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


async def fetch(
    outbound: Outbound,
    url: str,
    method: str = "GET",
    headers: Sequence[tuple[bytes, bytes]] = (),
    body: bytes | None = None,
    timeout: float = 2.0,
    sender: str = "",
) -> Answer:
    """One exchange read to its end."""
    async with outbound.open(method, url, list(headers), body, timeout, sender) as upstream:
        chunks = [chunk async for chunk in upstream.chunks()]
        return Answer(upstream.status, list(upstream.headers), b"".join(chunks))


async def drain(upstream: Upstream, into: list[bytes], pause: float = 0.0) -> None:
    """Read ``upstream`` to its end into ``into``, spending ``pause`` seconds elsewhere after each chunk."""
    async for chunk in upstream.chunks():
        into.append(chunk)
        if pause:
            await asyncio.sleep(pause)


def pool_of(outbound: Outbound, server: ScriptedServer, host: str = "127.0.0.1") -> Pool:
    return outbound.pools[(host, server.port, server.tls is not None)]


def waiting(pool: Pool) -> int:
    """Requests queued for a connection of ``pool``, over all senders."""
    return sum(len(queue) for queue in pool.waiters.values())


def assert_settled(pool: Pool) -> None:
    """Nothing held, queued or counted as pending: what every pool must return to."""
    assert (pool.in_use, pool.pending, waiting(pool)) == (0, 0, 0)
    assert (pool.pending_by, pool.waiters, list(pool.turns)) == ({}, {}, [])


def in_flight(outbound: Outbound) -> list[Connection]:
    """The connections carrying a request right now (the deadline sweeper tracks each)."""
    return list(outbound._deadlines)


def run_on(loop: str, scenario: Callable[[], Coroutine[object, object, None]]) -> None:
    """Run ``scenario`` to its end on a fresh event loop of the given kind."""
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(scenario())


# -- Outbound.target: origins and request targets ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin", "target"),
    [
        ("http://example.com/ocpi/versions", ("example.com", 80, False, b"example.com"), b"/ocpi/versions"),
        ("https://example.com", ("example.com", 443, True, b"example.com"), b"/"),
        ("https://example.com/", ("example.com", 443, True, b"example.com"), b"/"),
        ("http://example.com:8080/a/b?c=d&e=f", ("example.com", 8080, False, b"example.com:8080"), b"/a/b?c=d&e=f"),
        ("https://cpo.example:8443/ocpi", ("cpo.example", 8443, True, b"cpo.example:8443"), b"/ocpi"),
        ("HTTPS://CPO.Example:443/Ocpi", ("cpo.example", 443, True, b"cpo.example"), b"/Ocpi"),
        ("http://127.0.0.1:9000/x", ("127.0.0.1", 9000, False, b"127.0.0.1:9000"), b"/x"),
        ("http://[::1]:8080/ocpi", ("::1", 8080, False, b"[::1]:8080"), b"/ocpi"),
        ("https://[::1]/", ("::1", 443, True, b"[::1]"), b"/"),
        ("http://[2001:db8::1]", ("2001:db8::1", 80, False, b"[2001:db8::1]"), b"/"),
        ("http://h:1?x=1", ("h", 1, False, b"h:1"), b"/?x=1"),
        ("https://h?x=1&y=2", ("h", 443, True, b"h"), b"/?x=1&y=2"),
    ],
)
async def test_target(outbound: Outbound, url: str, origin: tuple[str, int, bool, bytes], target: bytes) -> None:
    pool, path = outbound.target(url)
    assert (pool.origin.host, pool.origin.port, pool.origin.tls, pool.origin.host_header) == origin
    assert path == target
    assert outbound.pools[origin[:3]] is pool


async def test_target_shares_one_pool_per_origin(outbound: Outbound) -> None:
    first, _ = outbound.target("https://cpo.example/ocpi/versions")
    second, _ = outbound.target("https://cpo.example:443/ocpi/2.2.1/locations?limit=5")
    other, _ = outbound.target("http://cpo.example/ocpi/versions")
    assert first is second
    assert other is not first
    assert len(outbound.pools) == 2


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/file",
        "example.com/ocpi",
        "HTTP-ish://example.com/",
        "http://user@h/",
        "http://user:secret@h:80/",
        "http:///ocpi",
        "http://:8080/",
        "http://h:port/",
        "http://h:70000/",
        "http://h:0/",
    ],
)
async def test_target_refuses_urls_the_hub_may_not_call(outbound: Outbound, url: str) -> None:
    with pytest.raises(ReceiverUnreachableError) as refused:
        outbound.open("GET", url, [], None, 1.0)
    assert refused.value.ocpi_status == 4003
    assert outbound.pools == {}  # refused before any pool (or connection) exists


# -- URL guards: nothing reaches the wire --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/a\r\nx-injected: 1",
        "http://127.0.0.1:{port}/a\rb",
        "http://127.0.0.1:{port}/a\nb",
        "http://127.0.0.1:{port}/a b",
        "http://127.0.0.1:{port}/a?q=1 2",
        "http://127.0.0.1:{port}/a\tb",
        "http://127.0.0.1:{port}/a\x00b",
        "http://127.0.0.1:{port}/a\x01b",
        "http://127.0.0.1:{port}/a\x7fb",
        "http://127.0.0.1:{port}/caf\u00e9",
        "http://127.0.0.1:{port}\r\n/x",
        "http://127.0.0.1\t:{port}/x",
        "http://user@127.0.0.1:{port}/x",
        "http://user:secret@127.0.0.1:{port}/x",
        "http://127.0.0.1:70000/x",
        "http://127.0.0.1:0/x",
        "ftp://127.0.0.1:{port}/x",
        "gopher://127.0.0.1:{port}/x",
        "file:///etc/passwd",
        "ws://127.0.0.1:{port}/x",
    ],
    ids=lambda url: repr(url.replace("{port}", "P")),
)
async def test_unusable_url_is_4003_before_any_connection(
    start_server: StartServer, outbound: Outbound, url: str
) -> None:
    server = await start_server(answering())
    with pytest.raises(ReceiverUnreachableError) as refused:
        await fetch(outbound, url.replace("{port}", str(server.port)))
    assert refused.value.ocpi_status == 4003
    assert outbound.pools == {}
    # The positive signal: a usable URL on the same server does arrive, and it is the only connection made.
    assert (await fetch(outbound, server.url("/fine"))).body == b"ok"
    assert server.accepted == 1
    assert [r.target for r in server.requests] == ["/fine"]


# -- response framing -----------------------------------------------------------------------------------------


async def test_content_length_response(start_server: StartServer, outbound: Outbound) -> None:
    payload = b'{"status_code":1000,"data":[]}'

    async def respond(peer: Peer, _request: Received) -> None:
        peer.send(response(payload, "201 Created", [(b"Content-Type", b"application/json"), (b"X-Thing", b"a b")]))
        await peer.flush()

    server = await start_server(looping(respond))
    answer = await fetch(outbound, server.url("/ocpi/x"))
    assert answer.status == 201
    assert answer.body == payload
    assert (b"Content-Type", b"application/json") in answer.headers
    assert (b"X-Thing", b"a b") in answer.headers
    pool = pool_of(outbound, server)
    assert (pool.in_use, pool.open, len(pool.idle)) == (0, 1, 1)
    assert_settled(pool)


async def test_chunked_response_with_extensions(start_server: StartServer, outbound: Outbound) -> None:
    pieces = [b"alpha-", b"\r\n0\r\n\r\n", b"x" * 3000, b"omega"]  # the second looks like a last chunk
    extensions = [b"", b";ext=1", b';name="quoted;value"', b";a=1;b"]

    async def respond(peer: Peer, _request: Received) -> None:
        peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await peer.flush()
        for i, piece in enumerate(pieces):
            peer.send(b"%x%s\r\n" % (len(piece), extensions[i % len(extensions)]), piece, b"\r\n")
            await peer.flush()
        peer.send(b"0;done=yes\r\n\r\n")
        await peer.flush()

    server = await start_server(looping(respond))
    for _ in range(2):
        answer = await fetch(outbound, server.url())
        assert answer.status == 200
        assert answer.body == b"".join(pieces)
    assert server.accepted == 1  # the last chunk ended the message: the connection was reused


@pytest.mark.parametrize(
    "head",
    [b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"HTTP/1.0 200 OK\r\n\r\n"],
    ids=["http11-connection-close", "http10"],
)
async def test_close_delimited_response(start_server: StartServer, outbound: Outbound, head: bytes) -> None:
    pieces = [b"first;", b"second;" * 100, b"third"]

    async def script(peer: Peer) -> None:
        await peer.request()
        peer.send(head)
        await peer.flush()
        for piece in pieces:
            peer.send(piece)
            await peer.flush()
        peer.close()

    server = await start_server(script)
    for _ in range(2):
        answer = await fetch(outbound, server.url())
        assert answer.status == 200
        assert answer.body == b"".join(pieces)
    assert server.accepted == 2  # a connection whose end delimited the body is never reused
    pool = pool_of(outbound, server)
    await wait_until(lambda: pool.open == 0, 2.0, "both connections forgotten")
    assert len(pool.idle) == 0
    assert_settled(pool)


async def test_close_delimited_body_cut_by_the_deadline_is_not_complete(
    start_server: StartServer, outbound: Outbound
) -> None:
    """A close-delimited body the deadline cut off is a 4002, not a complete (truncated) body.

    The caller is a slow consumer (as the proxy is when its own client reads slowly): the deadline passes while it
    is busy, the sweeper aborts the connection, and connection_lost must not mistake that end for the body's end.
    """

    async def script(peer: Peer) -> None:
        await peer.request()
        peer.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nfirst part;")
        await peer.flush()
        await peer.until_client_closes()  # the rest never comes

    server = await start_server(script)
    received: list[bytes] = []
    async with outbound.open("GET", server.url(), [], None, 0.2) as upstream:
        with pytest.raises(ForwardTimeoutError):
            await drain(upstream, received, pause=0.4)  # busy elsewhere past the deadline
    assert received == [b"first part;"]


async def test_bytes_after_a_complete_answer_are_not_part_of_it(start_server: StartServer, outbound: Outbound) -> None:
    """A second answer in the same write as the first (a confused or hostile receiver): the body ends where its
    Content-Length says, the extra answer reaches no one, and the connection is not reused."""

    async def script(peer: Peer) -> None:
        if peer.index > 0:
            await answering(b"fresh")(peer)
            return
        await peer.request()
        peer.send(response(b"ok") + response(b"smuggled", "404 Not Found"))
        await peer.flush()
        await peer.until_client_closes()

    server = await start_server(script)
    answer = await fetch(outbound, server.url("/a"))
    assert (answer.status, answer.body) == (200, b"ok")
    await wait_until(lambda: server.finished == 1, 2.0, "the hub dropping the connection")
    assert (await fetch(outbound, server.url("/b"))).body == b"fresh"
    assert server.accepted == 2


async def test_stray_answer_on_an_idle_connection_drops_it(start_server: StartServer, outbound: Outbound) -> None:
    """Some servers send "408 Request Timeout" on an idle keep-alive connection: it answers nothing the hub asked,
    so the connection is dropped, and the next request goes on a fresh one instead of reading that 408."""
    answered = asyncio.Event()

    async def script(peer: Peer) -> None:
        if peer.index > 0:
            await answering(b"fresh")(peer)
            return
        await peer.request()
        peer.send(response(b"first"))
        await peer.flush()
        await answered.wait()
        peer.send(response(b"", "408 Request Timeout"))
        await peer.flush()
        await peer.until_client_closes()

    server = await start_server(script)
    assert (await fetch(outbound, server.url())).body == b"first"
    pool = pool_of(outbound, server)
    assert (pool.open, len(pool.idle)) == (1, 1)
    answered.set()
    await wait_until(lambda: pool.open == 0, 2.0, "the hub dropping the connection the stray answer came on")
    answer = await fetch(outbound, server.url())
    assert (answer.status, answer.body) == (200, b"fresh")
    assert server.accepted == 2


# -- keep-alive ---------------------------------------------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection(start_server: StartServer, outbound: Outbound) -> None:
    server = await start_server(answering(b"pong"))
    for _ in range(3):
        assert (await fetch(outbound, server.url())).body == b"pong"
    assert server.accepted == 1
    assert [r.connection for r in server.requests] == [0, 0, 0]


async def test_connection_close_response_is_not_reused(start_server: StartServer, outbound: Outbound) -> None:
    async def script(peer: Peer) -> None:
        if await peer.request() is None:
            return
        peer.send(response(b"bye", headers=[(b"Connection", b"close")]))
        await peer.flush()
        await peer.until_client_closes()  # the server keeps it open: closing is the client's decision

    server = await start_server(script)
    assert (await fetch(outbound, server.url())).body == b"bye"
    assert (await fetch(outbound, server.url())).body == b"bye"
    assert server.accepted == 2
    await wait_until(lambda: server.finished == 2, 2.0, "the client closing both connections")


async def test_unfinished_response_is_not_reused(start_server: StartServer, outbound: Outbound) -> None:
    async def respond(peer: Peer, request: Received) -> None:
        if request.target == "/big":
            peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100000\r\n\r\n", b"x" * 1000)  # the rest is pending
        else:
            peer.send(response(b"small"))
        await peer.flush()

    server = await start_server(looping(respond))
    async with outbound.open("GET", server.url("/big"), [], None, 2.0) as upstream:
        assert upstream.status == 200  # the caller leaves without reading the body
    await wait_until(lambda: server.finished == 1, 2.0, "the hub dropping the unfinished connection")
    assert (await fetch(outbound, server.url("/small"))).body == b"small"
    assert server.accepted == 2
    assert [r.connection for r in server.requests] == [0, 1]
    pool = pool_of(outbound, server)
    assert (pool.in_use, pool.open, len(pool.idle)) == (0, 1, 1)
    assert_settled(pool)


# -- stale and half-closed connections ------------------------------------------------------------------------


def closes_on_second_request(partial_answer: bytes = b"") -> Script:
    """Connection 0 answers one request, reads the next and closes (optionally after ``partial_answer``): the
    receiver's keep-alive timer fired while that request was in flight. Later connections answer normally."""

    async def script(peer: Peer) -> None:
        if peer.index > 0:
            await answering(b"fresh")(peer)
            return
        await peer.request()
        peer.send(response(b"first"))
        await peer.flush()
        if await peer.request() is None:
            return
        if partial_answer:
            peer.send(partial_answer)
            await peer.flush()
        peer.close()

    return script


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_stale_connection_retried_once_for_idempotent(
    start_server: StartServer, outbound: Outbound, method: str
) -> None:
    server = await start_server(closes_on_second_request())
    assert (await fetch(outbound, server.url(), method)).body == b"first"
    answer = await fetch(outbound, server.url(), method)
    assert answer.body == b"fresh"  # transparent: one retry on a new connection
    assert server.accepted == 2
    assert [r.connection for r in server.requests] == [0, 0, 1]
    pool = pool_of(outbound, server)
    assert pool.open == 1
    assert_settled(pool)


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_stale_connection_not_retried_for_post_and_patch(
    start_server: StartServer, outbound: Outbound, method: str
) -> None:
    server = await start_server(closes_on_second_request())
    assert (await fetch(outbound, server.url(), method, body=b"{}")).body == b"first"
    with pytest.raises(ReceiverUnreachableError) as caught:
        await fetch(outbound, server.url(), method, body=b"{}")
    assert caught.value.ocpi_status == 4003
    assert server.accepted == 1  # not retried: the receiver may have acted on it
    assert len(server.requests) == 2
    assert_settled(pool_of(outbound, server))


async def test_post_after_a_noticed_close_goes_on_a_fresh_connection(
    start_server: StartServer, outbound: Outbound
) -> None:
    """When the receiver's FIN arrived before the next request, the hub has already dropped that connection: a
    POST then is sent on a fresh connection and succeeds (only the in-flight race above makes a POST fail)."""

    async def script(peer: Peer) -> None:
        if peer.index > 0:
            await answering(b"fresh")(peer)
            return
        await peer.request()
        peer.send(response(b"first"))
        await peer.flush()
        peer.close()  # right after answering, keep-alive headers notwithstanding

    server = await start_server(script)
    assert (await fetch(outbound, server.url(), "POST", body=b"1")).body == b"first"
    pool = pool_of(outbound, server)
    await wait_until(lambda: pool.open == 0 and not pool.idle, 2.0, "the hub noticing the receiver's FIN")
    assert (await fetch(outbound, server.url(), "POST", body=b"2")).body == b"fresh"
    assert server.accepted == 2
    assert [r.body for r in server.requests] == [b"1", b"2"]


async def test_stale_connection_that_started_answering_is_not_retried(
    start_server: StartServer, outbound: Outbound
) -> None:
    """client.py's contract: the retry is for a reused connection that dies "before any answer byte". Once the
    receiver started answering, it got and handled the request: the failure is reported, not hidden by a retry."""
    server = await start_server(closes_on_second_request(partial_answer=b"HTTP/1.1 200 OK\r\ncontent-le"))
    assert (await fetch(outbound, server.url())).body == b"first"
    with pytest.raises(ReceiverUnreachableError):
        await fetch(outbound, server.url())
    assert server.accepted == 1


@pytest.mark.parametrize(
    ("head", "partial"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n", b"0123456789"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", b"a\r\n0123456789\r\n"),
    ],
    ids=["content-length", "chunked"],
)
async def test_close_mid_body(start_server: StartServer, outbound: Outbound, head: bytes, partial: bytes) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        peer.send(head, partial)
        await peer.flush()
        peer.close()

    server = await start_server(script)
    received: list[bytes] = []
    async with outbound.open("GET", server.url(), [], None, 2.0) as upstream:
        assert upstream.status == 200
        with pytest.raises(ReceiverUnreachableError) as caught:
            await drain(upstream, received)
    assert caught.value.ocpi_status == 4003
    assert b"".join(received) == b"0123456789"
    pool = pool_of(outbound, server)
    await wait_until(lambda: pool.open == 0, 2.0, "the broken connection forgotten")
    assert len(pool.idle) == 0
    assert_settled(pool)


# -- timeouts ---------------------------------------------------------------------------------------------------


async def test_no_answer_is_4002_on_time(start_server: StartServer, outbound: Outbound) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.until_client_closes()

    server = await start_server(script)
    timeout = 0.3
    started = time.monotonic()
    with pytest.raises(ForwardTimeoutError) as caught:
        await fetch(outbound, server.url(), timeout=timeout)
    elapsed = time.monotonic() - started
    assert caught.value.ocpi_status == 4002
    assert timeout - 0.005 <= elapsed <= timeout + LATENESS, elapsed
    assert SWEEP_INTERVAL <= LATENESS
    await wait_until(lambda: server.finished == 1, 2.0, "the hub dropping the timed-out connection")
    pool = pool_of(outbound, server)
    assert len(pool.idle) == 0
    assert_settled(pool)


async def test_stalled_body_is_4002_from_chunks(start_server: StartServer, outbound: Outbound) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n", b"0123456789")
        await peer.flush()
        await peer.until_client_closes()

    server = await start_server(script)
    timeout = 0.3
    started = time.monotonic()
    received: list[bytes] = []
    async with outbound.open("GET", server.url(), [], None, timeout) as upstream:
        assert upstream.status == 200
        with pytest.raises(ForwardTimeoutError):
            await drain(upstream, received)
    elapsed = time.monotonic() - started
    assert b"".join(received) == b"0123456789"
    assert timeout - 0.005 <= elapsed <= timeout + LATENESS, elapsed
    await wait_until(lambda: server.finished == 1, 2.0, "the hub dropping the timed-out connection")


async def test_connection_refused_is_4003_quickly(outbound: Outbound, refusing_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(ReceiverUnreachableError) as caught:
        await fetch(outbound, f"http://127.0.0.1:{refusing_port}/ocpi", timeout=5.0)
    assert caught.value.ocpi_status == 4003
    assert time.monotonic() - started < 0.5
    pool = next(iter(outbound.pools.values()))
    assert pool.open == 0
    assert_settled(pool)


# -- pool limits --------------------------------------------------------------------------------------------------


async def test_per_host_limit_queues_requests(start_server: StartServer, make_outbound: MakeOutbound) -> None:
    outbound = make_outbound(per_host=2)
    delay = 0.2
    server = await start_server(answering(b"slow", delay))
    started = time.monotonic()
    answers = await asyncio.gather(*(fetch(outbound, server.url(f"/r{i}"), timeout=5.0) for i in range(10)))
    elapsed = time.monotonic() - started
    assert [a.body for a in answers] == [b"slow"] * 10
    assert server.max_active <= 2
    assert server.accepted == 2
    assert sorted(r.target for r in server.requests) == sorted(f"/r{i}" for i in range(10))
    assert 5 * delay - 0.02 <= elapsed <= 5 * delay + 0.5, elapsed
    pool = pool_of(outbound, server)
    assert (pool.open, len(pool.idle)) == (2, 2)
    assert_settled(pool)


async def test_queue_wait_longer_than_timeout_is_4002_and_leaks_nothing(
    start_server: StartServer, make_outbound: MakeOutbound
) -> None:
    outbound = make_outbound(per_host=2)
    server = await start_server(answering(b"slow", 0.2))
    # Two answered at 0.2 s; two more get a connection then but their answer (0.4 s) misses the deadline (0.35 s);
    # the last two time out waiting for a connection.
    results = await asyncio.gather(
        *(fetch(outbound, server.url(), timeout=0.35) for _ in range(6)), return_exceptions=True
    )
    answers = [r for r in results if isinstance(r, Answer)]
    timeouts = [r for r in results if isinstance(r, ForwardTimeoutError)]
    assert len(answers) == 2 and len(timeouts) == 4, results
    pool = pool_of(outbound, server)
    await wait_until(lambda: pool.open <= 2, 2.0, "aborted connections forgotten")
    assert_settled(pool)
    # The server still sleeps on the requests the hub gave up on; count concurrency afresh once it is done.
    await wait_until(lambda: server.active <= pool.open, 2.0, "the server finishing abandoned requests")
    server.max_active = server.active
    # Still works, up to the limit, concurrently.
    again = await asyncio.gather(*(fetch(outbound, server.url(), timeout=2.0) for _ in range(4)))
    assert [a.body for a in again] == [b"slow"] * 4
    assert server.max_active <= 2
    assert_settled(pool)
    assert pool.open <= 2


async def test_short_timeout_waiters_give_up_while_the_holder_finishes(
    start_server: StartServer, make_outbound: MakeOutbound
) -> None:
    outbound = make_outbound(per_host=1)
    server = await start_server(answering(b"slow", 0.4))
    holder = asyncio.create_task(fetch(outbound, server.url("/a"), timeout=2.0))
    await wait_until(lambda: len(server.requests) == 1, 2.0, "the first request")
    started = time.monotonic()
    waiting_calls = await asyncio.gather(
        *(fetch(outbound, server.url("/b"), timeout=0.15) for _ in range(2)), return_exceptions=True
    )
    assert all(isinstance(r, ForwardTimeoutError) for r in waiting_calls), waiting_calls
    assert time.monotonic() - started <= 0.15 + LATENESS
    assert (await holder).body == b"slow"
    pool = pool_of(outbound, server)
    assert pool.open == 1
    assert_settled(pool)
    assert (await fetch(outbound, server.url("/c"))).body == b"slow"
    assert server.accepted == 1
    assert [r.target for r in server.requests] == ["/a", "/c"]


async def test_cancelled_waiter_passes_its_turn_on(start_server: StartServer, make_outbound: MakeOutbound) -> None:
    """A waiter cancelled after it was handed the free connection, but before it ran (a caller's own timeout or
    a downstream disconnect in the same loop step), must not swallow that wake-up: the next waiter gets it."""
    outbound = make_outbound(per_host=1)
    gate = asyncio.Event()

    async def respond(peer: Peer, request: Received) -> None:
        if request.target == "/hold":  # the head now, the body once the test opens the gate
            peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
            await peer.flush()
            await gate.wait()
            peer.send(b"/hold")
        else:
            peer.send(response(request.target.encode()))
        await peer.flush()

    server = await start_server(looping(respond))
    async with outbound.open("GET", server.url("/hold"), [], None, 5.0) as upstream:
        pool = pool_of(outbound, server)
        first = asyncio.create_task(fetch(outbound, server.url("/first"), timeout=5.0))
        await wait_until(lambda: waiting(pool) == 1, 2.0, "the first waiter")
        second = asyncio.create_task(fetch(outbound, server.url("/second"), timeout=1.0))
        await wait_until(lambda: waiting(pool) == 2, 2.0, "the second waiter")
        gate.set()
        assert b"".join([c async for c in upstream.chunks()]) == b"/hold"
    first.cancel()  # same loop step as the release above, which woke `first`
    with pytest.raises(asyncio.CancelledError):
        await first
    answer = await second
    assert answer.body == b"/second"
    assert_settled(pool)


async def test_newcomer_does_not_take_the_connection_freed_for_a_waiter(
    start_server: StartServer, make_outbound: MakeOutbound
) -> None:
    """A request arriving just as a connection is released (before the woken waiter runs) queues behind the
    waiters instead of taking that connection: the waiters keep their order."""
    outbound = make_outbound(per_host=1)
    gate = asyncio.Event()

    async def respond(peer: Peer, request: Received) -> None:
        if request.target == "/held":  # the head now, the body once the test opens the gate
            peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
            await peer.flush()
            await gate.wait()
            peer.send(b"/held")
        else:
            peer.send(response(request.target.encode()))
        await peer.flush()

    server = await start_server(looping(respond))
    async with outbound.open("GET", server.url("/held"), [], None, 5.0) as upstream:
        pool = pool_of(outbound, server)
        waiters = []
        for n in (1, 2):
            waiters.append(asyncio.create_task(fetch(outbound, server.url(f"/w{n}"), timeout=5.0)))
            await wait_until(lambda n=n: waiting(pool) == n, 2.0, f"waiter {n} queued")  # type: ignore[misc]
        gate.set()
        assert await upstream.read_whole(100) == b"/held"
        newcomer = asyncio.create_task(fetch(outbound, server.url("/new"), timeout=5.0))  # runs before /w1 wakes
    answers = await asyncio.gather(*waiters, newcomer)
    assert [a.body for a in answers] == [b"/w1", b"/w2", b"/new"]
    assert [r.target for r in server.requests] == ["/held", "/w1", "/w2", "/new"]
    assert_settled(pool)


async def test_waiters_keep_their_order_when_the_connection_is_not_reusable(
    start_server: StartServer, make_outbound: MakeOutbound
) -> None:
    outbound = make_outbound(per_host=1)
    gate = asyncio.Event()

    async def respond(peer: Peer, request: Received) -> None:
        await gate.wait()
        peer.send(response(request.target.encode(), headers=[(b"connection", b"close")]))
        await peer.flush()
        peer.close()

    server = await start_server(looping(respond))
    first = asyncio.create_task(fetch(outbound, server.url("/0"), timeout=5.0))
    await wait_until(lambda: len(server.requests) == 1, 2.0, "the first request")
    pool = pool_of(outbound, server)
    rest = []
    for n in (1, 2, 3):
        rest.append(asyncio.create_task(fetch(outbound, server.url(f"/{n}"), timeout=5.0)))
        await wait_until(lambda n=n: waiting(pool) == n, 2.0, f"waiter {n} queued")  # type: ignore[misc]
    gate.set()
    answers = await asyncio.gather(first, *rest)
    assert [a.body for a in answers] == [b"/0", b"/1", b"/2", b"/3"]
    assert [r.target for r in server.requests] == ["/0", "/1", "/2", "/3"]
    assert server.accepted == 4
    await wait_until(lambda: pool.open == 0, 2.0, "all connections forgotten")
    assert_settled(pool)


async def test_room_in_the_budget_goes_to_a_pool_that_can_use_it(
    start_server: StartServer, make_outbound: MakeOutbound
) -> None:
    """The process-wide cap is full; a receiver's pool is at its own limit with a waiter, another pool waits for
    room. When an idle connection is evicted to make room, the room goes to the pool that can open a connection,
    not to the waiter that has to wait for its own pool anyway."""
    outbound = make_outbound(max_connections=2, per_host=1)
    gate = asyncio.Event()
    idle_server = await start_server(answering(b"idle"))
    busy_server = await start_server(gated(gate))
    free_server = await start_server(answering(b"free"))
    assert (await fetch(outbound, idle_server.url())).body == b"idle"  # one idle connection: budget 1 of 2
    holder = asyncio.create_task(fetch(outbound, busy_server.url("/held"), timeout=5.0))
    await wait_until(lambda: len(busy_server.requests) == 1, 2.0, "the busy receiver holding a connection")
    busy = pool_of(outbound, busy_server)
    queued = asyncio.create_task(fetch(outbound, busy_server.url("/queued"), timeout=5.0))
    await wait_until(lambda: waiting(busy) == 1, 2.0, "a waiter on the busy receiver's own limit")
    answer = await fetch(outbound, free_server.url(), timeout=1.0)  # needs the room the idle connection gives
    assert answer.body == b"free"
    assert idle_server.accepted == 1
    gate.set()
    assert [a.body for a in await asyncio.gather(holder, queued)] == [b"ok", b"ok"]
    for pool in outbound.pools.values():
        assert_settled(pool)


async def test_max_connections_caps_all_pools(start_server: StartServer, make_outbound: MakeOutbound) -> None:
    """Settings.max_connections is "Outbound connections in all, per process": three receivers, a cap of two."""
    outbound = make_outbound(max_connections=2, per_host=2)
    gate = asyncio.Event()
    servers = [await start_server(gated(gate)) for _ in range(3)]
    tasks = [asyncio.create_task(fetch(outbound, s.url(), timeout=3.0)) for s in servers]
    # The positive signal that the cap held: two requests arrived and the third queues for a connection.
    await wait_until(
        lambda: (
            len(outbound.pools) == 3
            and sum(len(s.requests) for s in servers) == 2
            and sum(waiting(p) for p in outbound.pools.values()) == 1
        ),
        2.0,
        "two requests sent and the third queued",
    )
    assert sum(s.accepted for s in servers) == 2
    assert outbound.budget.open == 2
    gate.set()
    answers = await asyncio.gather(*tasks)
    assert [a.body for a in answers] == [b"ok"] * 3
    assert max(s.max_active for s in servers) <= 1
    assert outbound.budget.open <= 2
    for pool in outbound.pools.values():
        assert_settled(pool)


# -- fairness between senders and pending caps ----------------------------------------------------------------


async def test_senders_take_turns_on_a_busy_pool(start_server: StartServer, make_outbound: MakeOutbound) -> None:
    """Sender A queues 50 requests to a receiver with one connection, then sender B one: B is served after at
    most one more of A's (round robin between senders), not after all 50; A's own keep their order."""
    outbound = make_outbound(per_host=1, max_pending=100, max_pending_per_sender=100)
    gate = asyncio.Event()
    server = await start_server(gated(gate, body=b""))
    flood = [asyncio.create_task(fetch(outbound, server.url(f"/a{i}"), timeout=20.0, sender="A")) for i in range(50)]
    await wait_until(lambda: len(server.requests) == 1, 2.0, "A's first request holding the connection")
    pool = pool_of(outbound, server)
    await wait_until(lambda: waiting(pool) == 49, 2.0, "A's other requests queued")
    late = asyncio.create_task(fetch(outbound, server.url("/b"), timeout=20.0, sender="B"))
    await wait_until(lambda: waiting(pool) == 50, 2.0, "B's request queued")
    assert list(pool.turns) == ["A", "B"]
    gate.set()
    assert (await late).body == b"/b"
    answers = await asyncio.gather(*flood)
    assert [a.body for a in answers] == [f"/a{i}".encode() for i in range(50)]
    order = [r.target for r in server.requests]
    assert order.index("/b") <= 2, order[:5]  # /a0 held the connection, at most /a1 goes before /b
    assert [t for t in order if t != "/b"] == [f"/a{i}" for i in range(50)]
    assert server.accepted == 1
    assert_settled(pool)


async def test_pending_caps_answer_4003_at_once_and_leak_nothing(
    start_server: StartServer, make_outbound: MakeOutbound
) -> None:
    outbound = make_outbound(per_host=1, max_pending=3, max_pending_per_sender=2)
    gate = asyncio.Event()
    server = await start_server(gated(gate))
    holder = asyncio.create_task(fetch(outbound, server.url("/a1"), timeout=10.0, sender="A"))
    await wait_until(lambda: len(server.requests) == 1, 2.0, "A's first request")
    pool = pool_of(outbound, server)
    queued = [asyncio.create_task(fetch(outbound, server.url("/a2"), timeout=10.0, sender="A"))]
    await wait_until(lambda: waiting(pool) == 1, 2.0, "A's second request queued")

    started = time.monotonic()
    with pytest.raises(OverloadedError) as per_sender:  # A's third: past max_pending_per_sender
        await fetch(outbound, server.url("/a3"), timeout=10.0, sender="A")
    assert per_sender.value.ocpi_status == 4003
    queued.append(asyncio.create_task(fetch(outbound, server.url("/b1"), timeout=10.0, sender="B")))
    await wait_until(lambda: waiting(pool) == 2, 2.0, "B's request queued")
    with pytest.raises(OverloadedError):  # anyone's next: past max_pending for the origin
        await fetch(outbound, server.url("/c1"), timeout=10.0, sender="C")
    assert time.monotonic() - started < 0.5  # at once, not after the 10 s timeout
    assert (pool.pending, pool.pending_by) == (3, {"A": 2, "B": 1})

    for task in queued:  # the requesters go away while queued
        task.cancel()
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results), results
    assert (pool.pending, pool.pending_by, waiting(pool), list(pool.turns)) == (1, {"A": 1}, 0, [])
    holder.cancel()  # and the one holding the connection, mid-answer
    with pytest.raises(asyncio.CancelledError):
        await holder
    assert_settled(pool)
    await wait_until(lambda: pool.open == 0, 2.0, "the abandoned connection forgotten")
    gate.set()
    # The caps are free again for everyone.
    answers = await asyncio.gather(*(fetch(outbound, server.url(f"/{s}"), sender=s) for s in "ABC"))
    assert [a.body for a in answers] == [b"ok"] * 3
    assert_settled(pool)


async def test_failed_requests_give_their_pending_place_back(make_outbound: MakeOutbound, refusing_port: int) -> None:
    outbound = make_outbound(per_host=1, max_pending=1, max_pending_per_sender=1)
    for _ in range(3):  # with a leak, the second would already be refused as overloaded
        with pytest.raises(ReceiverUnreachableError) as caught:
            await fetch(outbound, f"http://127.0.0.1:{refusing_port}/", sender="A")
        assert not isinstance(caught.value, OverloadedError)
    assert_settled(next(iter(outbound.pools.values())))


# -- request framing --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "body", "length"),
    [
        ("GET", None, None),
        ("DELETE", None, None),
        ("POST", bytes(range(256)) * 3, "768"),
        ("PUT", b'{"uid":"1"}', "11"),
        ("PATCH", b'{"status":"AVAILABLE"}', "22"),
        ("POST", None, "0"),
        ("PUT", None, "0"),
        ("PATCH", b"", "0"),
    ],
)
async def test_request_framing(
    start_server: StartServer, outbound: Outbound, method: str, body: bytes | None, length: str | None
) -> None:
    server = await start_server(answering())
    headers = [
        (b"Authorization", b"Token ZXhhbXBsZQ=="),
        (b"X-Request-ID", b"req-1"),
        (b"OCPI-from-country-code", b"NL"),
        (b"x-lower", b"  spaced value"),
    ]
    target = "/ocpi/2.2.1/locations/NL/CPO/LOC1?date_from=2024-01-01T00:00:00Z&limit=5"
    await fetch(outbound, server.url(target), method, headers, body)
    (seen,) = server.requests
    assert seen.request_line == f"{method} {target} HTTP/1.1"
    assert seen.headers[0] == ("host", f"127.0.0.1:{server.port}")
    assert seen.headers[1:5] == [(n.decode(), v.decode().strip()) for n, v in headers]
    assert seen.values("content-length") == ([] if length is None else [length])
    assert seen.values("host") == [f"127.0.0.1:{server.port}"]
    assert len(seen.headers) == 5 + (length is not None)
    assert seen.body == (body or b"")


async def test_query_without_path_is_sent(start_server: StartServer, outbound: Outbound) -> None:
    """``http://h:p?x=1`` is ``GET /?x=1`` (test_target agrees); the query must not be dropped."""
    server = await start_server(answering())
    await fetch(outbound, f"http://127.0.0.1:{server.port}?x=1")
    assert server.requests[0].target == "/?x=1"


async def test_large_request_body_arrives_whole(start_server: StartServer, outbound: Outbound) -> None:
    """A body of many write pieces, to a receiver that reads it: every byte arrives, in order, once."""
    body = random.Random(2).randbytes(10 * WRITE_PIECE + 123)
    server = await start_server(answering(b"stored"))
    answer = await fetch(outbound, server.url(), "PUT", body=body, timeout=5.0)
    assert answer.body == b"stored"
    assert server.requests[0].body == body
    assert (await fetch(outbound, server.url())).body == b"stored"
    assert server.accepted == 1


# -- write-side flow control ------------------------------------------------------------------------------------


async def body_to_a_receiver_that_does_not_read() -> None:
    """``send`` waits for a receiver that reads nothing of the body (bounded buffer), and the deadline ends it."""
    body = bytes(UNREAD_BODY)

    async def script(peer: Peer) -> None:
        await peer.request_head()
        await peer.hold()

    async with scripted(script) as server:
        outbound = new_outbound()
        try:
            timeout = 1.0
            started = time.monotonic()
            call = asyncio.create_task(fetch(outbound, server.url(), "PUT", body=body, timeout=timeout))
            await wait_until(
                lambda: any(c.write_paused and c._drained is not None for c in in_flight(outbound)),
                2.0,
                "the hub waiting for the receiver to take more of the body",
            )
            (conn,) = in_flight(outbound)
            assert conn.transport is not None
            buffered = conn.transport.get_write_buffer_size()
            # Without flow control the transport would hold what the socket did not take: ~12 of the 16 MiB.
            assert buffered <= 4 * WRITE_PIECE, buffered
            assert not call.done()
            with pytest.raises(ForwardTimeoutError) as caught:
                await call
            elapsed = time.monotonic() - started
            assert caught.value.ocpi_status == 4002
            assert timeout - 0.005 <= elapsed <= timeout + LATENESS, elapsed
            pool = pool_of(outbound, server)
            await wait_until(lambda: pool.open == 0, 2.0, "the timed-out connection forgotten")
            assert_settled(pool)
        finally:
            await close_outbound(outbound)


async def answer_before_the_body_is_read() -> None:
    """A receiver that answers (413) without reading the body: the hub passes that answer on at once instead of
    waiting to finish a write that will never finish, and does not reuse the connection."""
    body = bytes(UNREAD_BODY)

    async def script(peer: Peer) -> None:
        if peer.index > 0:
            await answering(b"fresh")(peer)
            return
        await peer.request_head()
        peer.send(response(b"too large", "413 Content Too Large"))  # keep-alive as far as its headers go
        await peer.flush()
        await peer.hold()

    async with scripted(script) as server:
        outbound = new_outbound()
        try:
            started = time.monotonic()
            answer = await fetch(outbound, server.url(), "PUT", body=body, timeout=5.0)
            assert (answer.status, answer.body) == (413, b"too large")
            assert time.monotonic() - started < 1.0
            pool = pool_of(outbound, server)
            await wait_until(lambda: pool.open == 0, 2.0, "the half-written connection dropped")
            assert (await fetch(outbound, server.url())).body == b"fresh"
            assert server.accepted == 2
            assert_settled(pool)
        finally:
            await close_outbound(outbound)


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_body_to_a_receiver_that_does_not_read(loop: str) -> None:
    run_on(loop, body_to_a_receiver_that_does_not_read)


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_answer_before_the_body_is_read(loop: str) -> None:
    run_on(loop, answer_before_the_body_is_read)


# -- large bodies and back-pressure ---------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_large_body_streams_with_back_pressure(
    start_server: StartServer, outbound: Outbound, chunked: bool
) -> None:
    payload = random.Random(1).randbytes(5 * 1024 * 1024)
    piece = 64 * 1024

    async def respond(peer: Peer, _request: Received) -> None:
        framing = b"transfer-encoding: chunked" if chunked else b"content-length: %d" % len(payload)
        peer.send(b"HTTP/1.1 200 OK\r\n%s\r\n\r\n" % framing)
        for at in range(0, len(payload), piece):
            part = payload[at : at + piece]
            peer.send(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            await peer.flush()
        if chunked:
            peer.send(b"0\r\n\r\n")
            await peer.flush()

    server = await start_server(looping(respond))
    received: list[bytes] = []
    most_buffered = 0
    paused_seen = False
    async with outbound.open("GET", server.url(), [], None, 10.0) as upstream:
        conn = upstream._conn
        async for chunk in upstream.chunks():
            received.append(chunk)
            most_buffered = max(most_buffered, conn.buffered + len(chunk))
            paused_seen = paused_seen or conn.paused
            await asyncio.sleep(0.002)  # a slower consumer than loopback
    assert len(b"".join(received)) == len(payload)
    assert b"".join(received) == payload
    assert paused_seen, "reading was never paused for a slow consumer"
    assert most_buffered <= HIGH_WATER + READ_SIZE, most_buffered
    # Read to its end: reused, and reading was resumed.
    assert (await fetch(outbound, server.url())).body == payload
    assert server.accepted == 1


async def test_complete_body_taken_whole_leaves_a_usable_connection(
    start_server: StartServer, outbound: Outbound
) -> None:
    """The proxy's path: ``read_whole`` before the answer head goes out. A body of HIGH_WATER + 1 bytes makes the
    read that completes it also pause reading; the connection then goes back to the pool and must still work."""
    payload = b"y" * (HIGH_WATER + 1)
    server = await start_server(answering(payload))
    async with outbound.open("GET", server.url(), [], None, 2.0) as upstream:
        assert await upstream.read_whole(len(payload)) == payload
    answer = await fetch(outbound, server.url(), timeout=1.0)
    assert answer.body == payload
    assert server.accepted == 1


# -- read_whole ---------------------------------------------------------------------------------------------------


async def test_read_whole_waits_for_a_body_in_pieces(start_server: StartServer, outbound: Outbound) -> None:
    pieces = [b"a" * 1000, b"b" * 1000, b"c" * 1000]

    async def respond(peer: Peer, _request: Received) -> None:
        peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 3000\r\n\r\n")
        for piece in pieces:
            await peer.flush()
            await asyncio.sleep(0.02)
            peer.send(piece)
        await peer.flush()

    server = await start_server(looping(respond))
    async with outbound.open("GET", server.url(), [], None, 2.0) as upstream:
        assert await upstream.read_whole(3000) == b"".join(pieces)  # exactly the limit: still whole
    assert_settled(pool_of(outbound, server))


async def test_read_whole_of_a_stalled_body_is_4002(start_server: StartServer, outbound: Outbound) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n", b"x" * 50)  # half, then nothing
        await peer.flush()
        await peer.until_client_closes()

    server = await start_server(script)
    timeout = 0.3
    started = time.monotonic()
    async with outbound.open("GET", server.url(), [], None, timeout) as upstream:
        with pytest.raises(ForwardTimeoutError) as caught:
            await upstream.read_whole(1000)
    elapsed = time.monotonic() - started
    assert caught.value.ocpi_status == 4002
    assert timeout - 0.005 <= elapsed <= timeout + LATENESS, elapsed
    await wait_until(lambda: server.finished == 1, 2.0, "the hub dropping the stalled connection")
    assert_settled(pool_of(outbound, server))


async def test_read_whole_of_a_body_cut_off_is_4003(start_server: StartServer, outbound: Outbound) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n", b"x" * 50)
        await peer.flush()
        peer.close()

    server = await start_server(script)
    async with outbound.open("GET", server.url(), [], None, 2.0) as upstream:
        with pytest.raises(ReceiverUnreachableError) as caught:
            await upstream.read_whole(1000)
    assert caught.value.ocpi_status == 4003
    pool = pool_of(outbound, server)
    await wait_until(lambda: pool.open == 0, 2.0, "the broken connection forgotten")
    assert_settled(pool)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_read_whole_over_the_limit_then_streams_it_all(
    start_server: StartServer, outbound: Outbound, chunked: bool
) -> None:
    payload = random.Random(3).randbytes(3 * HIGH_WATER)
    limit = 100_000

    async def respond(peer: Peer, _request: Received) -> None:
        if chunked:
            peer.send(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for at in range(0, len(payload), 50_000):
                part = payload[at : at + 50_000]
                peer.send(b"%x\r\n%s\r\n" % (len(part), part))
            peer.send(b"0\r\n\r\n")
        else:
            peer.send(response(payload))
        await peer.flush()

    server = await start_server(looping(respond))
    async with outbound.open("GET", server.url(), [], None, 5.0) as upstream:
        assert await upstream.read_whole(limit) is None
        assert b"".join([chunk async for chunk in upstream.chunks()]) == payload
    assert (await fetch(outbound, server.url())).body == payload  # read to its end: reusable
    assert server.accepted == 1


# -- malformed, oversized and unusual answers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x01\x02 not http at all\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
    ],
    ids=["binary", "bad-status", "bad-length"],
)
async def test_malformed_response_is_4003_and_dropped(
    start_server: StartServer, outbound: Outbound, garbage: bytes
) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        peer.send(garbage)
        await peer.flush()
        await peer.until_client_closes()

    server = await start_server(script)
    with pytest.raises(ReceiverUnreachableError):
        await fetch(outbound, server.url())
    await wait_until(lambda: server.finished == 1, 2.0, "the hub dropping the connection")
    pool = pool_of(outbound, server)
    await wait_until(lambda: pool.open == 0, 2.0, "the connection forgotten")
    assert len(pool.idle) == 0
    assert_settled(pool)
    assert server.accepted == 1  # a fresh connection: nothing to retry


def many_headers(count: int, size: int = 20) -> bytes:
    return b"".join(b"x-h%03d: %s\r\n" % (i, b"v" * size) for i in range(count))


@pytest.mark.parametrize(
    ("extra", "accepted"),
    [
        (many_headers(MAX_ANSWER_HEADERS - 1), True),  # with content-length: exactly the most headers
        (many_headers(MAX_ANSWER_HEADERS), False),
        (many_headers(1000), False),
        (many_headers(55, 1000), True),  # about 55 KiB: large, but under the bound
        (many_headers(80, 1000), False),  # about 80 KiB in 80 headers
        (b"x-big: " + b"v" * (MAX_ANSWER_HEAD + 1) + b"\r\n", False),  # one header over the bound
        (b"x-huge: " + b"v" * (8 * 1024 * 1024) + b"\r\n", False),  # 8 MiB: refused long before its end
    ],
    ids=["100-headers", "101-headers", "1000-headers", "55k-head", "80k-head", "64k-header", "8m-header"],
)
async def test_answer_head_bounds(start_server: StartServer, outbound: Outbound, extra: bytes, accepted: bool) -> None:
    """A party may not make the hub hold (or pass on) an unbounded answer head: past 100 headers or 64 KiB it is
    4003, and the connection is closed, never reused."""

    async def respond(peer: Peer, request: Received) -> None:
        if request.target == "/big":
            peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n" + extra + b"\r\nok")
        else:
            peer.send(response(b"small"))
        await peer.flush()

    server = await start_server(looping(respond))
    if accepted:
        answer = await fetch(outbound, server.url("/big"))
        assert (answer.status, answer.body) == (200, b"ok")
        assert len(answer.headers) == 1 + extra.count(b"\r\n")
    else:
        with pytest.raises(ReceiverUnreachableError) as caught:
            await fetch(outbound, server.url("/big"))
        assert caught.value.ocpi_status == 4003
        await wait_until(lambda: server.finished == 1, 2.0, "the hub closing the connection")
    assert (await fetch(outbound, server.url("/small"))).body == b"small"
    assert server.accepted == (1 if accepted else 2)
    assert_settled(pool_of(outbound, server))


async def test_answer_head_that_never_ends_is_refused_at_the_bound(
    start_server: StartServer, outbound: Outbound
) -> None:
    """A header line that never ends gives the parser nothing to call back with: the bytes counted off the wire
    refuse it once they pass the bound, long before the deadline, without holding the rest."""

    async def script(peer: Peer) -> None:
        await peer.request()
        peer.send(b"HTTP/1.1 200 OK\r\nx-endless: " + b"v" * (MAX_ANSWER_HEAD + 1))
        await peer.flush()
        await peer.until_client_closes()

    server = await start_server(script)
    started = time.monotonic()
    with pytest.raises(ReceiverUnreachableError) as caught:
        await fetch(outbound, server.url(), timeout=5.0)
    assert caught.value.ocpi_status == 4003
    assert time.monotonic() - started < 1.0
    await wait_until(lambda: server.finished == 1, 2.0, "the hub closing the connection")


async def test_head_response_has_no_body(start_server: StartServer, outbound: Outbound) -> None:
    """HEAD is in client.IDEMPOTENT; its answer carries the GET's Content-Length but no body (RFC 9110 §9.3.2)."""

    async def respond(peer: Peer, request: Received) -> None:
        body = b"0123456789"
        if request.method == "HEAD":
            peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body))
        else:
            peer.send(response(body))
        await peer.flush()

    server = await start_server(looping(respond))
    answer = await fetch(outbound, server.url(), "HEAD", timeout=0.5)
    assert (answer.status, answer.body) == (200, b"")
    assert (await fetch(outbound, server.url(), timeout=0.5)).body == b"0123456789"


async def test_body_sent_after_a_head_answer_is_not_passed_on(start_server: StartServer, outbound: Outbound) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        peer.send(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n0123456789")  # a body HEAD answers never have
        await peer.flush()
        await peer.until_client_closes()

    server = await start_server(script)
    answer = await fetch(outbound, server.url(), "HEAD", timeout=0.5)
    assert (answer.status, answer.body) == (200, b"")


async def test_interim_1xx_response_is_skipped(start_server: StartServer, outbound: Outbound) -> None:
    """A client must parse and skip 1xx answers before the final one (RFC 9110 §15.2), e.g. 103 Early Hints."""

    async def respond(peer: Peer, _request: Received) -> None:
        peer.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
        await peer.flush()
        await asyncio.sleep(0.05)  # the interim answer arrives on its own
        peer.send(response(b"final"))
        await peer.flush()

    server = await start_server(looping(respond))
    answer = await fetch(outbound, server.url(), timeout=1.0)
    assert (answer.status, answer.body) == (200, b"final")
    assert not [v for n, v in answer.headers if n.lower() == b"link"]
    assert (await fetch(outbound, server.url(), timeout=1.0)).body == b"final"


# -- idle cleanup ------------------------------------------------------------------------------------------------


async def test_idle_timer_closes_idle_connections_and_drops_unused_pools(
    start_server: StartServer, outbound: Outbound, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no further request, the idle sweep closes a connection idle past IDLE_TIMEOUT (before the receiver's
    own keep-alive timer would), then drops the pool unused for POOL_TTL, then stops."""
    idle_timeout, pool_ttl = 0.3, 0.8
    monkeypatch.setattr(pool_module, "IDLE_TIMEOUT", idle_timeout)
    monkeypatch.setattr(client_module, "PRUNE_INTERVAL", idle_timeout / 2)
    monkeypatch.setattr(client_module, "POOL_TTL", pool_ttl)
    loop = asyncio.get_running_loop()
    server = await start_server(answering())
    assert (await fetch(outbound, server.url())).body == b"ok"
    released = loop.time()
    key = ("127.0.0.1", server.port, False)
    pool = outbound.pools[key]
    assert (pool.open, len(pool.idle)) == (1, 1)

    await wait_until(lambda: server.finished == 1, 5.0, "the hub closing the idle connection")
    closed_after = server.finished_at[0] - released
    # The sweep runs every PRUNE_INTERVAL (here IDLE_TIMEOUT / 2): the connection goes between one and one and a
    # half timeouts.
    assert idle_timeout <= closed_after <= 1.5 * idle_timeout + LATENESS, closed_after
    await wait_until(lambda: pool.open == 0, 2.0, "the closed connection forgotten")
    assert len(pool.idle) == 0

    await wait_until(lambda: key not in outbound.pools, 5.0, "the unused pool dropped")
    assert loop.time() - released >= pool_ttl
    assert outbound._pruner is None  # nothing left to sweep: no timer keeps running
    assert (await fetch(outbound, server.url())).body == b"ok"  # a new pool when the party is called again
    assert outbound.pools[key] is not pool
    assert server.accepted == 2


# -- network policy at connect time ------------------------------------------------------------------------------


async def test_connect_refuses_addresses_the_policy_does_not_permit(
    start_server: StartServer, make_outbound: MakeOutbound, caplog: pytest.LogCaptureFixture
) -> None:
    """A name that resolves to loopback is refused when the hub connects (the default policy: public addresses
    only), with no connection made; the operator's allow-list permits it."""
    server = await start_server(answering(b"local"))
    strict = make_outbound(policy=NetworkPolicy())
    for host in ("localhost", "127.0.0.1"):
        started = time.monotonic()
        with pytest.raises(ReceiverUnreachableError) as refused:
            await fetch(strict, server.url("/x", host=host), timeout=5.0)
        assert refused.value.ocpi_status == 4003
        assert not isinstance(refused.value, OverloadedError)
        assert "127.0.0.1" not in refused.value.message  # parties are not told what is where
        assert time.monotonic() - started < 1.0
        pool = pool_of(strict, server, host)
        assert pool.open == 0
        assert_settled(pool)
    assert "party URL refused at connect time" in caplog.text

    allowed = make_outbound(policy=LOOPBACK)
    answer = await fetch(allowed, server.url("/y", host="localhost"))
    assert answer.body == b"local"
    assert server.accepted == 1  # the permitted request is the only connection the server saw
    assert [(r.target, r.values("host")) for r in server.requests] == [("/y", [f"localhost:{server.port}"])]


# -- TLS ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    return self_signed(tmp_path, "localhost")


def server_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.certfile, files.keyfile)
    return context


async def tls_round_trips(files: TlsFiles) -> None:
    """GET over TLS to a name the certificate is for, connected to the address it resolved to; reused after."""
    async with scripted(answering(b"secret"), tls=server_context(files)) as server:
        outbound = new_outbound(ssl_context=files.client_context)
        try:
            for path in ("/a", "/b"):
                answer = await fetch(outbound, server.url(path, host="localhost"))
                assert (answer.status, answer.body) == (200, b"secret")
            assert server.accepted == 1
            assert [r.values("host") for r in server.requests] == [[f"localhost:{server.port}"]] * 2
            pool = pool_of(outbound, server, "localhost")
            assert (pool.open, len(pool.idle)) == (1, 1)
            assert_settled(pool)
        finally:
            await close_outbound(outbound)


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_tls_get_and_keep_alive(tls_files: TlsFiles, loop: str) -> None:
    run_on(loop, lambda: tls_round_trips(tls_files))


@pytest.mark.parametrize(
    ("host", "trusted"),
    [("localhost", False), ("127.0.0.1", True)],
    ids=["untrusted-ca", "name-not-in-certificate"],
)
async def test_tls_certificate_not_accepted_is_4003(
    start_server: StartServer, make_outbound: MakeOutbound, tls_files: TlsFiles, host: str, trusted: bool
) -> None:
    server = await start_server(answering(b"secret"), tls=server_context(tls_files))
    outbound = make_outbound(ssl_context=tls_files.client_context if trusted else None)  # else: the system's CAs
    with pytest.raises(ReceiverUnreachableError) as refused:
        await fetch(outbound, server.url("/", host=host), timeout=2.0)
    assert refused.value.ocpi_status == 4003
    pool = pool_of(outbound, server, host)
    assert pool.open == 0
    assert_settled(pool)
    assert server.requests == []  # the handshake failed: no request was ever sent


# -- call_json ---------------------------------------------------------------------------------------------------


@dataclass
class JsonParty:
    port: int
    seen: list[dict[str, str]]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def json_party() -> AsyncIterator[JsonParty]:
    seen: list[dict[str, str]] = []

    async def versions(request: Request) -> Response:
        seen.append(dict(request.headers))
        return JSONResponse({"status_code": 1000, "data": [{"version": "2.2.1", "url": "http://x/2.2.1"}]})

    async def echo(request: Request) -> Response:
        seen.append(dict(request.headers))
        return JSONResponse({"echo": await request.json()}, status_code=201)

    async def html(_request: Request) -> Response:
        return HTMLResponse("<html><body>502 Bad Gateway</body></html>", status_code=502)

    app = Starlette(routes=[Route("/versions", versions), Route("/echo", echo, methods=["POST"]), Route("/html", html)])
    async with serve(app, lifespan="off") as port:
        yield JsonParty(port, seen)


async def test_call_json_parses_json(outbound: Outbound, json_party: JsonParty) -> None:
    reply = await outbound.call_json("GET", json_party.url("/versions"), b"Token abc")
    assert reply.status == 200
    assert reply.data == {"status_code": 1000, "data": [{"version": "2.2.1", "url": "http://x/2.2.1"}]}
    assert reply.content_type.startswith("application/json")
    (headers,) = json_party.seen
    assert headers["authorization"] == "Token abc"
    assert headers["accept"] == "application/json"
    assert headers["host"] == f"127.0.0.1:{json_party.port}"
    # uvicorn keeps the connection alive: the next call reuses it.
    await outbound.call_json("GET", json_party.url("/versions"), b"Token abc")
    pool = outbound.pools[("127.0.0.1", json_party.port, False)]
    assert (pool.in_use, pool.open) == (0, 1)
    assert_settled(pool)


async def test_call_json_sends_a_json_body(outbound: Outbound, json_party: JsonParty) -> None:
    body = {"token": "t", "url": "http://x/versions", "roles": [{"role": "CPO"}]}
    reply = await outbound.call_json("POST", json_party.url("/echo"), b"Token abc", body=body)
    assert (reply.status, reply.data) == (201, {"echo": body})
    assert json_party.seen[0]["content-type"] == "application/json"


async def test_call_json_on_html(outbound: Outbound, json_party: JsonParty) -> None:
    reply = await outbound.call_json("GET", json_party.url("/html"), b"Token abc")
    assert reply.status == 502
    assert reply.data is None
    assert reply.content_type.startswith("text/html")


async def test_call_json_answer_over_the_limit_is_3001(outbound: Outbound, json_party: JsonParty) -> None:
    with pytest.raises(ClientApiError) as refused:
        await outbound.call_json("GET", json_party.url("/versions"), b"Token abc", limit=20)
    assert refused.value.ocpi_status == 3001
    assert "larger than 20 bytes" in refused.value.message
    assert_settled(outbound.pools[("127.0.0.1", json_party.port, False)])


async def test_call_json_transport_failure_is_3001(
    start_server: StartServer, outbound: Outbound, refusing_port: int
) -> None:
    with pytest.raises(ClientApiError) as refused:
        await outbound.call_json("GET", f"http://127.0.0.1:{refusing_port}/versions", b"Token abc", timeout=2.0)
    assert refused.value.ocpi_status == 3001
    assert isinstance(refused.value.__cause__, ReceiverUnreachableError)

    async def silent(peer: Peer) -> None:
        await peer.request()
        await peer.until_client_closes()

    server = await start_server(silent)
    with pytest.raises(ClientApiError) as timed_out:
        await outbound.call_json("GET", server.url("/versions"), b"Token abc", timeout=0.2)
    assert timed_out.value.ocpi_status == 3001
    assert isinstance(timed_out.value.__cause__, ForwardTimeoutError)


async def test_hanging_receivers_cannot_take_the_room_a_healthy_one_needs(
    start_server: StartServer, make_outbound: MakeOutbound
) -> None:
    """Receivers that hang fill their pools; the process-wide budget still keeps room for a pool below its floor
    (issue: greedy and dead parties — nine hanging receivers used to stall unrelated healthy traffic)."""
    outbound = make_outbound(max_connections=8, per_host=8)
    gate = asyncio.Event()
    hanging = [await start_server(gated(gate)) for _ in range(2)]
    healthy = await start_server(answering(b"healthy"))
    held = [asyncio.create_task(fetch(outbound, s.url(f"/{n}"), timeout=5.0)) for s in hanging for n in range(8)]
    # The hanging ones hold every place they may: the first all but the reserve, the second one from the reserve.
    await wait_until(lambda: outbound.budget.open == 7, 2.0, "the hanging pools full")
    started = asyncio.get_running_loop().time()
    assert (await fetch(outbound, healthy.url(), timeout=1.0)).body == b"healthy"
    assert asyncio.get_running_loop().time() - started < 0.5  # at once, not after a hanging receiver's timeout
    gate.set()
    assert all(a.body == b"ok" for a in await asyncio.gather(*held))
    for pool in outbound.pools.values():
        assert_settled(pool)
