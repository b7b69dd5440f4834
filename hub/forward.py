"""The one outbound HTTP client of a hub process: forwarding to parties, broadcast copies and control-plane calls.

Owns: a lean HTTP/1.1 keep-alive client on asyncio protocols with httptools' response parser (chosen by
benchmark over aiohttp and httpx: benchmarks/RESULTS.md), its per-receiver connection pools, explicit connect and
total timeouts, and mapping transport failures to OCPI errors: timeout → 4002, refused/reset/unresolvable → 4003
(status_codes §5.4). Correctness it keeps: Content-Length and chunked responses (httptools decodes chunks; the
proxy re-frames), keep-alive reuse only of fully read responses, a connection the receiver half-closed is never
reused, one retry on a fresh connection when a reused one dies before any answer byte and the method is
idempotent, back-pressure on large bodies, a bounded pool per receiver whose waiters time out like any request.
Must not: decide where a request goes, or parse forwarded bodies.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import httptools
import orjson

from routing.errors import ClientApiError, ForwardTimeoutError, OcpiError, ReceiverUnreachableError

Body = bytes | None

#: Idle connections are dropped before common server keep-alive timeouts (uvicorn's default is 5 s) expire,
#: so the hub rarely writes into a connection the receiver is closing.
IDLE_TIMEOUT: Final = 4.0
#: Read no further ahead of a slow sender than this; reading resumes below LOW_WATER.
HIGH_WATER: Final = 256 * 1024
LOW_WATER: Final = 64 * 1024
#: How often in-flight exchanges are checked against their deadlines (the precision of 4002).
SWEEP_INTERVAL: Final = 0.02
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_HTTP11: Final = b" HTTP/1.1\r\nhost: "
_CRLF: Final = b"\r\n"
_SEP: Final = b": "


class _Closed(Exception):
    """The connection ended before the answer was complete."""


class _Expired(Exception):
    """The request's deadline passed."""


@dataclass(frozen=True, slots=True)
class Origin:
    """scheme://host:port of a receiver, with what connecting to it needs."""

    host: str
    port: int
    tls: bool
    host_header: bytes


def split_url(url: str) -> tuple[Origin, bytes]:
    """``https://h:p/a/b?q`` → (origin, b"/a/b?q"); ValueError for anything but http(s) URLs."""
    if url.startswith("https://"):
        tls, rest = True, url[8:]
    elif url.startswith("http://"):
        tls, rest = False, url[7:]
    else:
        raise ValueError(f"not an http(s) URL: {url!r}")
    slash = rest.find("/")
    authority, target = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    if "?" in authority:
        authority, target = authority.split("?", 1)[0], "/?" + authority.split("?", 1)[1]
    host, port = authority, 443 if tls else 80
    if authority.startswith("["):  # IPv6 literal
        end = authority.find("]")
        host = authority[1:end]
        if authority[end + 1 : end + 2] == ":":
            port = int(authority[end + 2 :])
    elif ":" in authority:
        host, _, port_text = authority.rpartition(":")
        port = int(port_text)
    if not host or "@" in authority:
        raise ValueError(f"unsupported URL authority: {authority!r}")
    return Origin(host, port, tls, authority.encode("ascii")), target.encode("ascii")


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection to a receiver, carrying one exchange at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.WriteTransport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._reset()

    def _reset(self, method: str = "") -> None:
        if getattr(self, "paused", False) and self.transport is not None:
            self.transport.resume_reading()  # type: ignore[attr-defined]  # a body taken whole left it paused
        self.head_request = method == "HEAD"
        self.interim = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.paused = False
        self.head_done = False
        self.complete = False
        self.received_any = False
        self.keep_alive = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport; uvloop's is not asyncio's class

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(_Closed(f"malformed response: {exc}"))
            self.abort()

    def eof_received(self) -> bool | None:
        return None  # close our side too: a half-closed connection is never reused

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if (
            self.error is None
            and self.head_done
            and not self.complete
            and not self.parser.should_keep_alive()
            and self._length_unknown()
        ):
            self.complete = True  # a body delimited by the connection's end (RFC 9112 §6.3)
            self._wake()
        elif not self.complete:
            self._fail(_Closed("connection closed by the receiver"))
        self.pool.forget(self)

    # -- httptools callbacks ---------------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # An interim answer (100 Continue, 103 Early Hints): the final one follows on this connection.
            self.interim = True
            self.headers = []
            return
        self.status = status
        self.head_done = True
        if self.head_request:
            # A HEAD answer has no body whatever its Content-Length says; httptools cannot be told, so the
            # exchange ends here and the connection is not reused.
            self.complete = True
            self.keep_alive = False
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[attr-defined]  # stream transports can pause
        self._wake()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if self.head_request:
            return
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True
        self._wake()

    # -- exchange ------------------------------------------------------------------------------------------------

    def _length_unknown(self) -> bool:
        return not any(n.lower() in (b"content-length", b"transfer-encoding") for n, _ in self.headers)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def expire(self) -> None:
        self._fail(_Expired())
        self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def _wait(self) -> None:
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def send(self, method: str, head: bytes, body: bytes | None) -> None:
        self._reset(method)
        if self.transport is None or self.transport.is_closing():
            raise _Closed("connection closing")
        self.transport.write(head + body if body else head)

    async def head(self) -> None:
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self._wait()
        if self.error is not None:
            raise self.error

    async def body(self) -> AsyncIterator[bytes]:
        while True:
            if self.chunks:
                chunk = self.chunks.popleft()
                self.buffered -= len(chunk)
                if self.paused and self.buffered < LOW_WATER and self.transport is not None:
                    self.paused = False
                    self.transport.resume_reading()  # type: ignore[attr-defined]  # see pause_reading
                yield chunk
                continue
            if self.complete:
                return
            if self.error is not None:
                raise self.error
            await self._wait()

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and self.error is None


class Budget:
    """The process-wide cap on open connections, shared by every pool."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.pools: list[Pool] = []

    def take(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open -= 1

    def evict_idle(self) -> None:
        """Close the longest-idle connection of any pool; its end frees a place (Pool.forget)."""
        oldest: Connection | None = None
        for pool in self.pools:
            if pool.idle and (oldest is None or pool.idle[0].idle_since < oldest.idle_since):
                oldest = pool.idle[0]
        if oldest is not None:
            oldest.pool.idle.remove(oldest)
            oldest.abort()

    def wake_any(self) -> None:
        for pool in self.pools:
            if pool.waiters:
                pool._next_waiter()
                return


class Pool:
    """Keep-alive connections to one origin, at most ``limit`` at once; waiters are served in order."""

    def __init__(self, origin: Origin, limit: int, ssl_context: ssl.SSLContext | None, budget: Budget) -> None:
        self.origin = origin
        self.limit = limit
        self.budget = budget
        self.ssl_context = ssl_context
        self.idle: collections.deque[Connection] = collections.deque()
        self.open = 0
        self.in_use = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def take_idle(self, now: float) -> Connection | None:
        while self.idle:
            conn = self.idle.pop()  # the most recently used: warmest, least likely closed by the receiver
            if conn.closed or now - conn.idle_since > IDLE_TIMEOUT:
                conn.abort()
                continue
            self.in_use += 1
            return conn
        return None

    async def acquire(self, connect_timeout: float) -> tuple[Connection, bool]:
        """A connection and whether it was reused."""
        loop = asyncio.get_running_loop()
        while True:
            conn = self.take_idle(loop.time())
            if conn is not None:
                return conn, True
            if self.open < self.limit and self.budget.take():
                self.open += 1
                self.in_use += 1
                try:
                    return await self._connect(connect_timeout), False
                except BaseException:
                    self.open -= 1
                    self.in_use -= 1
                    self.budget.give_back()
                    self._next_waiter()
                    raise
            if self.open < self.limit:
                self.budget.evict_idle()  # the process-wide cap is reached: make room from an idle connection
            waiter = loop.create_future()
            self.waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._next_waiter()  # woken, then cancelled before it ran: pass the turn on
                raise
            finally:
                if not waiter.done():
                    waiter.cancel()
                if waiter in self.waiters:
                    self.waiters.remove(waiter)

    async def _connect(self, timeout: float) -> Connection:
        loop = asyncio.get_running_loop()
        origin = self.origin
        try:
            async with asyncio.timeout(timeout):
                _, protocol = await loop.create_connection(
                    lambda: Connection(self),
                    origin.host,
                    origin.port,
                    ssl=self.ssl_context if origin.tls else None,
                    server_hostname=origin.host if origin.tls else None,
                )
        except TimeoutError:
            raise ReceiverUnreachableError(f"could not connect within {timeout:g} s") from None
        except OSError as exc:  # refused, unreachable, unresolvable, TLS failure (ssl.SSLError is an OSError)
            raise ReceiverUnreachableError(f"could not connect: {exc.strerror or type(exc).__name__}") from None
        return protocol

    def release(self, conn: Connection) -> None:
        self.in_use -= 1
        if conn.reusable:
            conn.idle_since = asyncio.get_running_loop().time()
            self.idle.append(conn)
        else:
            conn.abort()
        if self.waiters:
            self._next_waiter()
        elif self.budget.open >= self.budget.limit:
            self.budget.wake_any()  # another pool may be waiting for room that this idle connection can give

    def forget(self, conn: Connection) -> None:
        """A connection ended (either side): it no longer counts against the limits."""
        self.open -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        self.budget.give_back()
        if self.waiters:
            self._next_waiter()
        else:
            self.budget.wake_any()

    def _next_waiter(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


@dataclass(frozen=True, slots=True)
class JsonReply:
    """A control-plane call's answer: HTTP status, parsed JSON (None when it was not JSON) and Content-Type."""

    status: int
    data: Any
    content_type: str


class Upstream:
    """A receiver's answer being streamed back."""

    __slots__ = ("_conn", "headers", "status")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers

    def whole_body(self) -> bytes | None:
        """The complete body when it has all arrived already (the usual case for OCPI answers), else None."""
        conn = self._conn
        if not conn.complete:
            return None
        body = b"".join(conn.chunks)
        conn.chunks.clear()
        conn.buffered = 0
        if conn.paused and conn.transport is not None:
            conn.paused = False
            conn.transport.resume_reading()  # type: ignore[attr-defined]  # see Connection.on_body
        return body

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._conn.body():
                yield chunk
        except _Expired:
            raise ForwardTimeoutError("the receiver did not finish its answer in time") from None
        except _Closed as exc:
            raise ReceiverUnreachableError(str(exc)) from None


class Exchange:
    """One request on a pooled connection, as an async context manager yielding the streamed answer."""

    __slots__ = ("body", "conn", "head", "method", "outbound", "pool", "timeout")

    def __init__(
        self, outbound: Outbound, method: str, url: str, headers: list[tuple[bytes, bytes]], body: Body, timeout: float
    ) -> None:
        self.outbound = outbound
        self.method = method
        self.body = body
        self.timeout = timeout
        self.conn: Connection | None = None
        self.pool, path = outbound.target(url)
        parts = [method.encode("ascii"), b" ", path, _HTTP11, self.pool.origin.host_header, _CRLF]
        for name, value in headers:
            parts += (name, _SEP, value, _CRLF)
        if body:
            parts += (b"content-length: ", str(len(body)).encode("ascii"), _CRLF)
        elif method in ("POST", "PUT", "PATCH"):
            parts.append(b"content-length: 0\r\n")
        parts.append(_CRLF)
        self.head = b"".join(parts)

    async def __aenter__(self) -> Upstream:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        pool = self.pool
        for attempt in (0, 1):
            # The common case needs no timer: a warm connection is there and nobody queues for it.
            conn, reused = (None if pool.waiters else pool.take_idle(loop.time())), True
            if conn is None:
                try:
                    async with asyncio.timeout_at(deadline):
                        conn, reused = await pool.acquire(self.outbound.connect_timeout)
                except TimeoutError:
                    raise ForwardTimeoutError(f"no connection to the receiver within {self.timeout:g} s") from None
            self.conn = conn
            self.outbound.track(conn, deadline)
            try:
                conn.send(self.method, self.head, self.body)
                await conn.head()
                return Upstream(conn)
            except _Closed:
                answered = conn.received_any
                self._finish()
                # A reused connection the receiver closed before answering: retry once on a fresh one when safe.
                if attempt == 0 and reused and not answered and self.method in IDEMPOTENT:
                    continue
                raise ReceiverUnreachableError("the receiver closed the connection") from None
            except _Expired:
                self._finish()
                raise ForwardTimeoutError(f"the receiver did not answer within {self.timeout:g} s") from None
            except BaseException:
                self._finish()
                raise
        raise ReceiverUnreachableError("the receiver closed the connection")  # not reached: the loop returns or raises

    async def __aexit__(self, *_exc: object) -> None:
        self._finish()

    def _finish(self) -> None:
        conn = self.conn
        if conn is not None:
            self.conn = None
            self.outbound.untrack(conn)
            if not conn.complete:
                conn.abort()  # an answer not read to its end cannot be followed by another on this connection
            self.pool.release(conn)


class Outbound:
    """Pooled outbound HTTP/1.1 for one process."""

    def __init__(self, *, max_connections: int, per_host: int, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self.per_host = per_host
        self.budget = Budget(max_connections)
        self.pools: dict[tuple[str, int, bool], Pool] = {}
        self._origins: dict[str, tuple[Origin, bytes]] = {}
        self.ssl_context = ssl.create_default_context()
        self._deadlines: dict[Connection, float] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def connections_in_use(self) -> int:
        return sum(p.in_use for p in self.pools.values())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for pool in self.pools.values():
            while pool.idle:
                pool.idle.pop().abort()

    def target(self, url: str) -> tuple[Pool, bytes]:
        # URLs share their base per receiver endpoint: cache the origin split by everything before the path.
        start = url.find("//") + 2
        slash, question = url.find("/", start), url.find("?", start)
        cut = min(i for i in (slash, question) if i >= 0) if slash >= 0 or question >= 0 else -1
        base = url if cut < 0 else url[:cut]
        cached = self._origins.get(base)
        if cached is None:
            try:
                cached = split_url(base)
            except ValueError as exc:
                raise ReceiverUnreachableError(str(exc)) from None
            if len(self._origins) > 10_000:
                self._origins.clear()
            self._origins[base] = cached
        origin = cached[0]
        key = (origin.host, origin.port, origin.tls)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = Pool(origin, self.per_host, self.ssl_context, self.budget)
            self.budget.pools.append(pool)
        path = "/" if cut < 0 else url[cut:] if url[cut] == "/" else "/" + url[cut:]
        try:
            return pool, path.encode("ascii")
        except UnicodeEncodeError:
            raise ReceiverUnreachableError("the receiver URL is not ASCII") from None

    def open(self, method: str, url: str, headers: list[tuple[bytes, bytes]], body: Body, timeout: float) -> Exchange:
        """``async with outbound.open(...) as upstream``: send a request, stream its answer; OCPI errors on failure."""
        return Exchange(self, method, url, headers, body, timeout)

    # -- deadlines: one sweep timer for all exchanges instead of a timer per request ---------------------------

    def track(self, conn: Connection, deadline: float) -> None:
        self._deadlines[conn] = deadline
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL, self._sweep)

    def untrack(self, conn: Connection) -> None:
        self._deadlines.pop(conn, None)

    def _sweep(self) -> None:
        now = asyncio.get_running_loop().time()
        for conn, deadline in list(self._deadlines.items()):
            if now >= deadline:
                del self._deadlines[conn]
                conn.expire()
        self._sweeper = None
        if self._deadlines:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL, self._sweep)

    async def call_json(
        self, method: str, url: str, authorization: bytes, *, body: Any = None, timeout: float = 10.0
    ) -> JsonReply:
        """A control-plane call (versions, details, credentials, ClientInfo); 3001 when it fails in transport."""
        # Requests the hub starts itself carry fresh ids too (transport_and_format §4.2).
        headers = [
            (b"authorization", authorization),
            (b"accept", b"application/json"),
            (b"x-request-id", str(uuid.uuid4()).encode("ascii")),
            (b"x-correlation-id", str(uuid.uuid4()).encode("ascii")),
        ]
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers.append((b"content-type", b"application/json"))
        try:
            async with self.open(method, url, headers, data, timeout) as upstream:
                raw = b"".join([chunk async for chunk in upstream.chunks()])
                status = upstream.status
                content_type = next(
                    (v.decode("latin-1") for n, v in upstream.headers if n.lower() == b"content-type"), ""
                )
        except OcpiError as exc:
            raise ClientApiError(f"{method} {url} failed: {exc.message}") from exc
        try:
            parsed = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = None
        return JsonReply(status, parsed, content_type)


async def gather_limited(limit: int, jobs: list[Any]) -> list[Any]:
    """Run coroutines with at most ``limit`` in flight; results in order, exceptions returned, not raised."""
    semaphore = asyncio.Semaphore(limit)

    async def run(job: Any) -> Any:
        async with semaphore:
            return await job

    return await asyncio.gather(*(run(j) for j in jobs), return_exceptions=True)
