"""hub/http/server.py under a real uvicorn on loopback: what a client may send before the hub spends work on it.

Each test serves a tiny ASGI app with ``protocol_for(HeadLimits(...))`` on a socket bound to port 0, in the test's
own process and event loop, and talks to it byte by byte: heads over the bounds are answered 431 with an OCPI
envelope and never reach the app, a head that does not arrive in time is answered 408 (or, when nothing came at
all, the connection closed), connections past the per-process cap get 503 at once, and ``ocpihub.abort`` cuts an
answer so the client sees a broken connection and uvicorn logs no error. Every scenario runs on asyncio's loop and
on uvloop (the hub's loop in production), each on a fresh ``asyncio.Runner``: pytest-asyncio picks other loops
only through a conftest hook, which would switch every async test under it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import psutil
import pytest
import uvloop
from starlette.types import Receive, Scope, Send

from hub.http.server import REFUSALS, HeadLimits, protocol_for
from tests.support.servers import serve

pytestmark = pytest.mark.integration

#: Bounds small enough to test quickly; the production defaults differ only in head_timeout and max_connections.
LIMITS = HeadLimits(max_headers=100, max_header_line=8192, max_head=32_768, head_timeout=0.5, max_connections=64)
#: How late a refusal on a timer may come on a loaded 2-core machine.
SLACK = 0.3
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}

Scenario = Callable[[], Coroutine[Any, Any, None]]
Run = Callable[[Scenario], None]


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Run:
    """Run a scenario to its end on a fresh event loop: asyncio's, then uvloop."""
    factory = LOOPS[request.param]

    def runner(scenario: Scenario) -> None:
        with asyncio.Runner(loop_factory=factory) as loop_runner:
            loop_runner.run(scenario())

    return runner


class App:
    """Reads the request body, answers 200 ``{"ok":true}``; ``/abort`` starts an answer and cuts it off."""

    def __init__(self) -> None:
        self.calls = 0
        self.bodies: list[bytes] = []
        self.extensions: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.calls += 1
        self.extensions.append(dict(scope.get("extensions") or {}))
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        if scope["path"] == "/abort":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
            await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
            scope["extensions"]["ocpihub.abort"]()
            if scope["query_string"] == b"yield":
                await asyncio.sleep(0)  # what hub/proxy.py does before returning
            return  # else straight away: the abort alone must keep uvicorn from calling this an app error
        answer = b'{"ok":true}'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


@asynccontextmanager
async def served(app: App, limits: HeadLimits = LIMITS) -> AsyncIterator[int]:
    async with serve(app, lifespan="off", http_protocol=protocol_for(limits)) as port:
        yield port


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    #: The server closed the connection right after this answer.
    closed: bool = False


def parse(raw: bytes, closed: bool = False) -> Reply:
    """One response off the wire (its body by Content-Length, or what there is of it); ``closed`` when ``raw`` was
    read to the connection's end."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {n.strip().lower(): v.strip() for n, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", len(rest)))
    return Reply(int(lines[0].split(" ")[1]), headers, rest[:length], closed)


def request(*headers: bytes, target: bytes = b"/", method: bytes = b"GET", body: bytes = b"") -> bytes:
    length = [b"content-length: %d" % len(body)] if body or method != b"GET" else []
    return b"\r\n".join([b"%s %s HTTP/1.1" % (method, target), b"host: hub", *headers, *length, b"", body])


def numbered(count: int, size: int = 10) -> list[bytes]:
    return [b"x-h%03d: %s" % (i, b"v" * size) for i in range(count)]


async def read_to_end(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """Everything until the server closes (a reset counts as the end)."""
    received = b""
    async with asyncio.timeout(timeout):
        try:
            while chunk := await reader.read(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return received


async def ask(port: int, data: bytes) -> Reply:
    """Send ``data`` on a new connection and read one answer; when it says ``connection: close``, also that the
    server then closes (not half-closing first: uvicorn closes on a client's EOF before answering)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        async with asyncio.timeout(5.0):
            head = await reader.readuntil(b"\r\n\r\n")
            reply = parse(head)
            body = await reader.readexactly(int(reply.headers["content-length"]))
        closed = reply.headers.get("connection") == "close" and await read_to_end(reader) == b""
        return Reply(reply.status, reply.headers, body, closed)
    finally:
        writer.close()


class Client:
    """One keep-alive connection, one exchange at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def exchange(self, data: bytes) -> Reply:
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        reply = parse(head)
        body = await self.reader.readexactly(int(reply.headers["content-length"]))
        return Reply(reply.status, reply.headers, body)

    def close(self) -> None:
        self.writer.close()


def assert_refusal(reply: Reply, status: int, ocpi_status: int, words: str) -> None:
    """An OCPI envelope with the connection closed, as hub/http/server.py refuses."""
    assert reply.status == status, reply
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["connection"] == "close"
    assert reply.closed
    envelope = orjson.loads(reply.body)
    assert envelope["status_code"] == ocpi_status, envelope
    assert words in envelope["status_message"], envelope
    assert "timestamp" in envelope


# -- head bounds: 431 before the app -------------------------------------------------------------------------


def test_too_many_headers_is_431_and_the_app_never_runs(run: Run) -> None:
    async def scenario() -> None:
        app = App()
        async with served(app) as port:
            assert_refusal((await ask(port, request(*numbered(100)))), 431, 2001, "more than 100")
            # The positive signal: the same server runs the app for a request at the bound (host + 99 = 100).
            assert (await ask(port, request(*numbered(99)))).status == 200
            assert app.calls == 1

    run(scenario)


def test_long_header_line_is_431(run: Run) -> None:
    async def scenario() -> None:
        app = App()
        async with served(app) as port:
            too_long = b"x-long: " + b"v" * (9 * 1024)
            assert_refusal((await ask(port, request(too_long))), 431, 2001, "header line is longer than 8192")
            long_url = b"/" + b"a" * (9 * 1024)
            assert_refusal((await ask(port, request(target=long_url))), 431, 2001, "request line is longer")
            at_the_bound = b"x-long: " + b"v" * (8192 - 12)
            assert (await ask(port, request(at_the_bound))).status == 200
            assert app.calls == 1

    run(scenario)


def test_large_head_is_431(run: Run) -> None:
    """40 headers of 1 KiB: each within bounds, the head (40 KiB) over 32 KiB — also when it arrives in one read."""

    async def scenario() -> None:
        app = App()
        async with served(app) as port:
            assert_refusal((await ask(port, request(*numbered(40, 1024)))), 431, 2001, "larger than 32768")
            assert (await ask(port, request(*numbered(30, 1024)))).status == 200
            assert app.calls == 1

    run(scenario)


def test_a_client_still_writing_its_refused_head_reads_the_431(run: Run) -> None:
    """A client that writes its whole (over-large) head before reading, as simple clients do: the refusal is
    followed by a FIN and what still arrives is read and dropped (RFC 9112 §9.6), instead of a close with unread
    data that resets the connection under the client, which then never sees the 431. Refusals are counted."""

    async def scenario() -> None:
        app = App()
        async with served(app) as port:
            before = REFUSALS["head_too_large"]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                head = b"GET / HTTP/1.1\r\nhost: hub\r\n" + b"".join(numbered(4000, 1000))  # ~4 MiB, no end
                async with asyncio.timeout(5.0):
                    for start in range(0, len(head), 65536):
                        writer.write(head[start : start + 65536])
                        await writer.drain()
                    reply = parse(await reader.readuntil(b"\r\n\r\n"))
                assert reply.status == 431, reply
            finally:
                writer.close()
            assert REFUSALS["head_too_large"] == before + 1
            assert app.calls == 0

    run(scenario)


def test_body_sent_with_its_head_is_not_counted_as_head(run: Run) -> None:
    """A request whose body arrives in the same reads as its head (most clients write both at once): only the
    head counts against the bound, however large the body."""

    async def scenario() -> None:
        app = App()
        body = bytes(range(256)) * 800  # 200 KiB
        async with served(app) as port:
            reply = await ask(port, request(method=b"PUT", body=body))
            assert reply.status == 200
            assert app.bodies == [body]

    run(scenario)


def test_head_bounds_count_each_request_of_a_connection(run: Run) -> None:
    """Counts start again with each request on a keep-alive connection: two heads of 60 headers pass, and a
    later head over the bound on the same connection is still refused."""

    async def scenario() -> None:
        app = App()
        async with served(app) as port:
            client = await Client.connect(port)
            try:
                for _ in range(2):
                    assert (await client.exchange(request(*numbered(60)))).status == 200
                client.writer.write(request(*numbered(101)))
                assert_refusal(parse(await read_to_end(client.reader), closed=True), 431, 2001, "more than 100")
            finally:
                client.close()
            assert app.calls == 2

    run(scenario)


def test_large_head_pipelined_behind_a_small_request_is_431(run: Run) -> None:
    """Two requests in one write: the bytes counted off the wire see the first head end, so the second head's
    size is counted from its parsed lines."""

    async def scenario() -> None:
        app = App()
        async with served(app) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request() + request(*numbered(40, 1024)))
            try:
                raw = await read_to_end(reader)
            finally:
                writer.close()
            first, _, second = raw.partition(b'{"ok":true}')
            assert parse(first).status == 200
            assert_refusal(parse(second, closed=True), 431, 2001, "larger than 32768")
            assert app.calls == 1

    run(scenario)


def test_huge_header_costs_others_little(run: Run) -> None:
    """A header of 48 MiB sent as fast as loopback takes it: refused after the first read over the bound, so other
    clients' requests meanwhile wait at most 0.5 s and the process grows by at most 50 MB. Measured without the
    bound (the parser joins the value by copying, quadratic in its size): 0.14 s and +50 MB on asyncio, 1.5 s and
    +40 MB on uvloop, all 48 MiB read; with it: under 1 ms and +0.1 MB, the connection cut once the refusal's
    lingering close has dropped LINGER_BYTES (8 MiB) more."""
    size = 48 * 1024 * 1024
    figures: dict[str, float] = {}

    def flood(port: int, outcome: dict[str, int]) -> None:
        piece = b"a" * 65536
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sent = 0
            try:
                sock.sendall(b"GET / HTTP/1.1\r\nhost: hub\r\nx-big: ")
                while sent < size:
                    sock.sendall(piece)
                    sent += len(piece)
                sock.sendall(b"\r\n\r\n")
            except OSError:
                pass  # the hub refused and closed: what the test wants
            outcome["sent"] = sent

    async def scenario() -> None:
        app = App()
        process = psutil.Process()
        # A head timeout longer than the flood takes: only the byte bound may stop it.
        async with served(app, HeadLimits(head_timeout=10.0)) as port:
            client = await Client.connect(port)
            try:
                assert (await client.exchange(request())).status == 200  # warm: allocations of a first request
                baseline = peak = process.memory_info().rss
                outcome: dict[str, int] = {}
                attacker = threading.Thread(target=flood, args=(port, outcome), daemon=True)
                attacker.start()
                delays: list[float] = []
                while attacker.is_alive() or len(delays) < 20:
                    started = time.perf_counter()
                    assert (await client.exchange(request())).status == 200
                    delays.append(time.perf_counter() - started)
                    peak = max(peak, process.memory_info().rss)
                    await asyncio.sleep(0.005)
                attacker.join()
            finally:
                client.close()
        figures.update(worst=max(delays), growth=(peak - baseline) / 1e6, sent=outcome["sent"] / 2**20)
        assert outcome["sent"] < size, "the hub read the whole header instead of refusing it"
        assert max(delays) <= 0.5, figures
        assert peak - baseline <= 50e6, figures
        assert app.calls == 1 + len(delays)  # the flood never reached the app

    run(scenario)
    print(
        f"48 MiB header: worst other request {figures['worst'] * 1000:.1f} ms, RSS +{figures['growth']:.1f} MB, "
        f"{figures['sent']:.1f} MiB sent before the refusal"
    )


# -- head timeout: slowloris and silent clients --------------------------------------------------------------


def test_slowloris_is_408_at_the_head_timeout(run: Run) -> None:
    async def scenario() -> None:
        app = App()
        async with served(app) as port:
            loop = asyncio.get_running_loop()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = loop.time()

            async def dribble() -> None:
                for byte in request(b"x-slow: " + b"a" * 100):
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.1)

            sender = asyncio.create_task(dribble())
            try:
                raw = await read_to_end(reader)
            finally:
                sender.cancel()
                writer.close()
            elapsed = loop.time() - started
            assert_refusal(parse(raw, closed=True), 408, 2000, "did not arrive within 0.5 s")
            assert LIMITS.head_timeout - 0.05 <= elapsed <= LIMITS.head_timeout + SLACK, elapsed
            assert app.calls == 0

    run(scenario)


def test_slowloris_on_a_kept_alive_connection_is_408(run: Run) -> None:
    """The bound applies to each request's head, from its first byte, not only to the first request's: one byte
    of a second request is a request begun, answered 408 rather than closed in silence."""

    async def scenario() -> None:
        app = App()
        async with served(app) as port:
            loop = asyncio.get_running_loop()
            client = await Client.connect(port)
            try:
                assert (await client.exchange(request())).status == 200
                started = loop.time()

                client.writer.write(b"G")  # one byte of the next request, then nothing
                raw = await read_to_end(client.reader)
            finally:
                client.close()
            elapsed = loop.time() - started
            assert_refusal(parse(raw, closed=True), 408, 2000, "did not arrive")
            assert LIMITS.head_timeout - 0.05 <= elapsed <= LIMITS.head_timeout + SLACK, elapsed
            assert app.calls == 1

    run(scenario)


def test_silent_client_is_closed_at_the_head_timeout(run: Run) -> None:
    async def scenario() -> None:
        app = App()
        async with served(app) as port:
            loop = asyncio.get_running_loop()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            started = loop.time()
            try:
                raw = await read_to_end(reader)
            finally:
                writer.close()
            elapsed = loop.time() - started
            assert raw == b""  # nothing was asked: nothing is answered
            assert LIMITS.head_timeout - 0.05 <= elapsed <= LIMITS.head_timeout + SLACK, elapsed

    run(scenario)


# -- connections per process ---------------------------------------------------------------------------------


def test_connections_past_the_cap_get_503_at_once(run: Run) -> None:
    limits = HeadLimits(head_timeout=5.0, max_connections=2)

    async def scenario() -> None:
        app = App()
        async with served(app, limits) as port:
            kept = [await Client.connect(port) for _ in range(2)]
            try:
                for client in kept:  # answered: both connections are open at the server
                    assert (await client.exchange(request())).status == 200
                started = time.monotonic()
                assert_refusal((await ask(port, request())), 503, 3000, "too many open connections")
                assert time.monotonic() - started < 1.0  # at once, not at the 5 s head timeout
                assert app.calls == 2
                kept.pop().close()
                # Room again once the server has seen that connection end.
                async with asyncio.timeout(2.0):
                    while (await ask(port, request())).status != 200:  # noqa: ASYNC110  # polls the server
                        await asyncio.sleep(0.02)
                assert app.calls == 3
            finally:
                for client in kept:
                    client.close()

    run(scenario)


# -- what the parser refuses ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"a\rb", b"a\nb", b"a\x00b", b"a\x7fb", b"a\r\n b"], ids=repr)
def test_control_characters_in_a_header_value_are_400(run: Run, value: bytes) -> None:
    async def scenario() -> None:
        app = App()
        async with served(app) as port:
            assert_refusal((await ask(port, request(b"x-bad: " + value))), 400, 2001, "malformed HTTP request")
            assert (await ask(port, request(b"x-good: a\tb"))).status == 200
            assert app.calls == 1

    run(scenario)


# -- ocpihub.abort ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("after", [b"return", b"yield"])
def test_abort_extension_cuts_the_answer_without_an_error_log(
    run: Run, after: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """The proxy's way out when a receiver fails mid-answer: the client's connection breaks (never a complete-
    looking answer), and uvicorn does not log the app as failed — whether it returns at once or a step later."""

    async def scenario() -> None:
        app = App()
        async with served(app) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request(target=b"/abort?" + after))
            try:
                raw = await read_to_end(reader)
            finally:
                writer.close()
            if raw:  # the head and some of the body may have left before the cut
                reply = parse(raw)
                assert reply.headers["content-length"] == "1000"
                assert len(reply.body) < 1000
            assert (await ask(port, request())).status == 200  # the server carries on
        (aborted, normal) = app.extensions
        assert callable(aborted["ocpihub.abort"])
        assert callable(normal["ocpihub.abort"])

    with caplog.at_level(logging.INFO):
        run(scenario)  # the server has shut down: every request task has ended and logged what it would
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
