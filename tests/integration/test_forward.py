"""hub/forward.py against real servers on loopback: framing, keep-alive, stale connections, timeouts, pool limits.

Most servers here are raw ``asyncio.start_server`` scripts (``ScriptedServer``) that write the response byte by
byte, so each test controls framing, timing and when a connection closes; ``call_json`` also runs against a
Starlette app on uvicorn. Each test counts what the server saw (accepted connections, requests, concurrency) and
checks the ``Pool`` bookkeeping afterwards, because a leaked slot or a wrongly reused connection only shows up on
the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from hub.forward import HIGH_WATER, SWEEP_INTERVAL, Origin, Outbound, Pool, Upstream, split_url
from routing.errors import ClientApiError, ForwardTimeoutError, ReceiverUnreachableError
from tests.support.fake_party import wait_until
from tests.support.servers import bound_socket, serve

pytestmark = pytest.mark.integration

#: How late a 4002 may come: the sweeper's period plus scheduling slack on a loaded machine.
LATENESS = 0.1
#: The most one read of an asyncio stream transport delivers (selector_events' max_size).
READ_SIZE = 256 * 1024


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

    def close(self) -> None:
        """FIN, the way a server ends a connection whose keep-alive timer fired."""
        self.writer.close()


Script = Callable[[Peer], Awaitable[None]]
Responder = Callable[[Peer, Received], Awaitable[None]]


class ScriptedServer:
    """``asyncio.start_server`` on 127.0.0.1:0 running ``script`` once per accepted connection, with counters."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.port = 0
        self.accepted = 0
        self.active = 0
        self.max_active = 0
        self.finished = 0
        self.requests: list[Received] = []
        self.failures: list[BaseException] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
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
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-script: several scenarios do exactly that
        except Exception as exc:  # an assertion inside a script: the fixture reports it
            self.failures.append(exc)
        finally:
            self.active -= 1
            self.finished += 1
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


class StartServer(Protocol):
    async def __call__(self, script: Script) -> ScriptedServer: ...


class MakeOutbound(Protocol):
    def __call__(self, *, per_host: int = 4, max_connections: int = 64, connect_timeout: float = 1.0) -> Outbound: ...


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    servers: list[ScriptedServer] = []

    async def start(script: Script) -> ScriptedServer:
        server = ScriptedServer(script)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()
    failures = [failure for server in servers for failure in server.failures]
    assert not failures, f"server scripts failed: {failures!r}"


@pytest.fixture
async def make_outbound() -> AsyncIterator[MakeOutbound]:
    made: list[Outbound] = []

    def make(*, per_host: int = 4, max_connections: int = 64, connect_timeout: float = 1.0) -> Outbound:
        outbound = Outbound(max_connections=max_connections, per_host=per_host, connect_timeout=connect_timeout)
        made.append(outbound)
        return outbound

    yield make
    for outbound in made:
        await outbound.close()
    for _ in range(3):  # let aborted transports run connection_lost and close their sockets
        await asyncio.sleep(0)


@pytest.fixture
def outbound(make_outbound: MakeOutbound) -> Outbound:
    return make_outbound()


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
) -> Answer:
    """One exchange read to its end."""
    async with outbound.open(method, url, list(headers), body, timeout) as upstream:
        chunks = [chunk async for chunk in upstream.chunks()]
        return Answer(upstream.status, list(upstream.headers), b"".join(chunks))


async def drain(upstream: Upstream, into: list[bytes], pause: float = 0.0) -> None:
    """Read ``upstream`` to its end into ``into``, spending ``pause`` seconds elsewhere after each chunk."""
    async for chunk in upstream.chunks():
        into.append(chunk)
        if pause:
            await asyncio.sleep(pause)


def pool_of(outbound: Outbound, server: ScriptedServer) -> Pool:
    return outbound.pools[("127.0.0.1", server.port, False)]


def closed_port() -> int:
    sock = bound_socket()
    port: int = sock.getsockname()[1]
    sock.close()  # bound, never listened, now closed: connecting is refused
    return port


# -- split_url -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "origin", "target"),
    [
        ("http://example.com/ocpi/versions", Origin("example.com", 80, False, b"example.com"), b"/ocpi/versions"),
        ("https://example.com", Origin("example.com", 443, True, b"example.com"), b"/"),
        ("https://example.com/", Origin("example.com", 443, True, b"example.com"), b"/"),
        (
            "http://example.com:8080/a/b?c=d&e=f",
            Origin("example.com", 8080, False, b"example.com:8080"),
            b"/a/b?c=d&e=f",
        ),
        ("https://cpo.example:8443/ocpi", Origin("cpo.example", 8443, True, b"cpo.example:8443"), b"/ocpi"),
        ("http://127.0.0.1:9000/x", Origin("127.0.0.1", 9000, False, b"127.0.0.1:9000"), b"/x"),
        ("http://[::1]:8080/ocpi", Origin("::1", 8080, False, b"[::1]:8080"), b"/ocpi"),
        ("https://[::1]/", Origin("::1", 443, True, b"[::1]"), b"/"),
        ("http://[2001:db8::1]", Origin("2001:db8::1", 80, False, b"[2001:db8::1]"), b"/"),
        ("http://h:1?x=1", Origin("h", 1, False, b"h:1"), b"/?x=1"),
        ("https://h?x=1&y=2", Origin("h", 443, True, b"h"), b"/?x=1&y=2"),
    ],
)
def test_split_url(url: str, origin: Origin, target: bytes) -> None:
    assert split_url(url) == (origin, target)


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
    ],
)
def test_split_url_rejects(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  # the message is not part of the contract
        split_url(url)


async def test_open_maps_a_bad_url_to_4003(outbound: Outbound) -> None:
    with pytest.raises(ReceiverUnreachableError):
        outbound.open("GET", "ftp://example.com/x", [], None, 1.0)


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
    assert (pool.in_use, len(pool.idle)) == (0, 0)


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
    assert (pool_of(outbound, server).in_use, pool_of(outbound, server).open) == (0, 1)


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
    assert pool_of(outbound, server).in_use == 0


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
    """forward.py's contract: the retry is for a reused connection that dies "before any answer byte". Once the
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
    assert (pool.in_use, len(pool.idle)) == (0, 0)


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
    assert (pool.in_use, len(pool.idle)) == (0, 0)


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


async def test_connection_refused_is_4003_quickly(outbound: Outbound) -> None:
    started = time.monotonic()
    with pytest.raises(ReceiverUnreachableError) as caught:
        await fetch(outbound, f"http://127.0.0.1:{closed_port()}/ocpi", timeout=5.0)
    assert caught.value.ocpi_status == 4003
    assert time.monotonic() - started < 0.5
    pool = next(iter(outbound.pools.values()))
    assert (pool.in_use, pool.open) == (0, 0)


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
    assert (pool.in_use, pool.open, len(pool.idle), len(pool.waiters)) == (0, 2, 2, 0)


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
    assert (pool.in_use, len(pool.waiters)) == (0, 0)
    # The server still sleeps on the requests the hub gave up on; count concurrency afresh once it is done.
    await wait_until(lambda: server.active <= pool.open, 2.0, "the server finishing abandoned requests")
    server.max_active = server.active
    # Still works, up to the limit, concurrently.
    again = await asyncio.gather(*(fetch(outbound, server.url(), timeout=2.0) for _ in range(4)))
    assert [a.body for a in again] == [b"slow"] * 4
    assert server.max_active <= 2
    assert (pool.in_use, len(pool.waiters)) == (0, 0)
    assert pool.open <= 2


async def test_short_timeout_waiters_give_up_while_the_holder_finishes(
    start_server: StartServer, make_outbound: MakeOutbound
) -> None:
    outbound = make_outbound(per_host=1)
    server = await start_server(answering(b"slow", 0.4))
    holder = asyncio.create_task(fetch(outbound, server.url("/a"), timeout=2.0))
    await wait_until(lambda: len(server.requests) == 1, 2.0, "the first request")
    started = time.monotonic()
    waiting = await asyncio.gather(
        *(fetch(outbound, server.url("/b"), timeout=0.15) for _ in range(2)), return_exceptions=True
    )
    assert all(isinstance(r, ForwardTimeoutError) for r in waiting), waiting
    assert time.monotonic() - started <= 0.15 + LATENESS
    assert (await holder).body == b"slow"
    pool = pool_of(outbound, server)
    assert (pool.in_use, pool.open, len(pool.waiters)) == (0, 1, 0)
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
        await wait_until(lambda: len(pool.waiters) == 1, 2.0, "the first waiter")
        second = asyncio.create_task(fetch(outbound, server.url("/second"), timeout=1.0))
        await wait_until(lambda: len(pool.waiters) == 2, 2.0, "the second waiter")
        gate.set()
        assert b"".join([c async for c in upstream.chunks()]) == b"/hold"
    first.cancel()  # same loop step as the release above, which woke `first`
    with pytest.raises(asyncio.CancelledError):
        await first
    answer = await second
    assert answer.body == b"/second"
    assert (pool.in_use, len(pool.waiters)) == (0, 0)


async def test_max_connections_caps_all_pools(start_server: StartServer, make_outbound: MakeOutbound) -> None:
    """Settings.max_connections is "Outbound connections in all, per process": three receivers, a cap of two."""
    outbound = make_outbound(max_connections=2, per_host=2)
    gate = asyncio.Event()

    async def respond(peer: Peer, _request: Received) -> None:
        await gate.wait()
        peer.send(response(b"ok"))
        await peer.flush()

    servers = [await start_server(looping(respond)) for _ in range(3)]
    tasks = [asyncio.create_task(fetch(outbound, s.url(), timeout=3.0)) for s in servers]
    with contextlib.suppress(AssertionError):  # the cap held: the third request waits for a connection
        await wait_until(lambda: sum(s.accepted for s in servers) >= 3, 0.3, "a third connection")
    concurrent = sum(s.active for s in servers)
    gate.set()
    answers = await asyncio.gather(*tasks)
    assert [a.body for a in answers] == [b"ok"] * 3
    assert concurrent <= 2, f"{concurrent} connections open at once with max_connections=2"


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
    """``http://h:p?x=1`` is ``GET /?x=1`` (split_url agrees: test_split_url); the query must not be dropped."""
    server = await start_server(answering())
    await fetch(outbound, f"http://127.0.0.1:{server.port}?x=1")
    assert server.requests[0].target == "/?x=1"


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
    """The proxy's path: ``whole_body()`` once the answer is complete. A body of HIGH_WATER + 1 bytes makes the
    read that completes it also pause reading; the connection then goes back to the pool and must still work."""
    payload = b"y" * (HIGH_WATER + 1)
    server = await start_server(answering(payload))
    whole: list[bytes] = []
    async with outbound.open("GET", server.url(), [], None, 2.0) as upstream:

        def arrived() -> bool:
            body = upstream.whole_body()
            if body is not None:
                whole.append(body)
            return body is not None

        await wait_until(arrived, 2.0, "the whole body")
    assert whole == [payload]
    answer = await fetch(outbound, server.url(), timeout=1.0)
    assert answer.body == payload


# -- malformed and unusual answers ------------------------------------------------------------------------------


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
    assert (pool.in_use, len(pool.idle)) == (0, 0)
    assert server.accepted == 1  # a fresh connection: nothing to retry


async def test_head_response_has_no_body(start_server: StartServer, outbound: Outbound) -> None:
    """HEAD is in forward.IDEMPOTENT; its answer carries the GET's Content-Length but no body (RFC 9110 §9.3.2)."""

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


async def test_call_json_transport_failure_is_3001(start_server: StartServer, outbound: Outbound) -> None:
    with pytest.raises(ClientApiError) as refused:
        await outbound.call_json("GET", f"http://127.0.0.1:{closed_port()}/versions", b"Token abc", timeout=2.0)
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
