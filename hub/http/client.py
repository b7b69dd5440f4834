"""The one outbound HTTP client of a hub process: forwarding to parties, broadcast copies and control-plane calls.

Owns: ``Outbound`` — a lean HTTP/1.1 keep-alive client (chosen by benchmark over aiohttp and httpx:
benchmarks/RESULTS.md) with one pool per party origin (hub/http/pool.py), explicit connect and total timeouts
checked by one sweep timer instead of a timer per request, an idle sweep that closes stale connections and drops
unused pools, one retry on a fresh connection when a reused one dies before any answer byte and the method is
idempotent, and mapping transport failures to OCPI errors: timeout → 4002, refused/reset/unresolvable/not
permitted → 4003 (status_codes §5.4).
Must not: decide where a request goes, or parse forwarded bodies.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import orjson

from hub.http.connection import ClosedError, Connection, ExpiredError
from hub.http.policy import NetworkPolicy, PartyUrl, PartyUrlError, parse_party_url
from hub.http.pool import EVICTABLE_IDLE, Budget, Limits, Pool
from hub.ids import new_request_id
from routing import headers as h
from routing.errors import ClientApiError, ForwardTimeoutError, OcpiError, ReceiverUnreachableError

Body = bytes | None

#: How often in-flight exchanges are checked against their deadlines (the precision of 4002).
SWEEP_INTERVAL: Final = 0.02
#: An origin's pool without connections or requests for this long is dropped (pools come and go with parties).
POOL_TTL: Final = 60.0
#: How often idle connections are looked at: stale ones closed, evictable ones offered to requests in line.
PRUNE_INTERVAL: Final = EVICTABLE_IDLE
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
#: The most a control-plane answer (versions, details, credentials) may be: they are a few KiB.
MAX_JSON_ANSWER: Final = 4 * 1024 * 1024
#: What a request target may not contain: controls, space and DEL would break or smuggle through a request line
#: (RFC 9112 §3.2); non-ASCII is refused too (parse_party_url percent-encodes URLs parties register).
_UNSENDABLE: Final = re.compile("[^\x21-\x7e]")
#: Sender key of the hub's own calls (control plane, broadcast copies), for the per-sender share of a pool.
HUB_SENDER: Final = ""
_HTTP11: Final = b" HTTP/1.1\r\nhost: "
_CRLF: Final = b"\r\n"
_SEP: Final = b": "


@dataclass(frozen=True, slots=True)
class JsonReply:
    """A control-plane call's answer: HTTP status, parsed JSON (None when it was not JSON) and Content-Type."""

    status: int
    data: Any
    content_type: str


class Upstream:
    """A receiver's answer: status and headers at once, the body read whole or streamed."""

    __slots__ = ("_conn", "headers", "status")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers

    async def read_whole(self, limit: int) -> bytes | None:
        """The whole body if it is at most ``limit`` bytes, else None (then stream it with ``chunks``)."""
        try:
            return await self._conn.read_whole(limit)
        except ExpiredError:
            raise ForwardTimeoutError("the receiver did not finish its answer in time") from None
        except ClosedError as exc:
            raise ReceiverUnreachableError(f"the receiver's answer broke off: {exc}") from None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._conn.body():
                yield chunk
        except ExpiredError:
            raise ForwardTimeoutError("the receiver did not finish its answer in time") from None
        except ClosedError as exc:
            raise ReceiverUnreachableError(f"the receiver's answer broke off: {exc}") from None


class Call:
    """One request on a pooled connection, as an async context manager yielding the answer."""

    __slots__ = ("body", "conn", "head", "method", "outbound", "pool", "sender", "timeout")

    def __init__(
        self,
        outbound: Outbound,
        method: str,
        url: str,
        headers: list[tuple[bytes, bytes]],
        body: Body,
        timeout: float,
        sender: str,
    ) -> None:
        self.outbound = outbound
        self.method = method
        self.body = body
        self.timeout = timeout
        self.sender = sender
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
        pool = self.pool
        pool.admit(self.sender)
        try:
            return await self._exchange(pool)
        except BaseException:
            self._finish()
            pool.done(self.sender)
            raise

    async def _exchange(self, pool: Pool) -> Upstream:
        loop = pool.loop
        deadline = loop.time() + self.timeout
        for attempt in (0, 1):
            # The common case needs no timer: a warm connection is there and nobody queues for it.
            conn, reused = (None if pool.has_waiters else pool.take_idle(loop.time())), True
            if conn is None:
                try:
                    async with asyncio.timeout_at(deadline):
                        conn, reused = await pool.acquire(self.outbound.connect_timeout, self.sender)
                except TimeoutError:
                    raise ForwardTimeoutError(f"no connection to the receiver within {self.timeout:g} s") from None
            self.conn = conn
            self.outbound.track(conn, deadline)
            try:
                await conn.send(self.method, self.head, self.body)
                await conn.head()
                return Upstream(conn)
            except ClosedError as exc:
                answered = conn.received_any
                self._finish()
                # A reused connection the receiver closed before answering: retry once on a fresh one when safe.
                if attempt == 0 and reused and not answered and self.method in IDEMPOTENT:
                    continue
                raise ReceiverUnreachableError(f"the receiver closed the connection: {exc}") from None
            except ExpiredError:
                self._finish()
                raise ForwardTimeoutError(f"the receiver did not answer within {self.timeout:g} s") from None
        raise ReceiverUnreachableError("the receiver closed the connection")  # not reached: the loop returns or raises

    async def __aexit__(self, *_exc: object) -> None:
        self._finish()
        self.pool.done(self.sender)

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

    def __init__(
        self,
        *,
        max_connections: int,
        per_host: int,
        connect_timeout: float,
        policy: NetworkPolicy | None = None,
        max_pending: int | None = None,
        max_pending_per_sender: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout = connect_timeout
        pending = max_pending if max_pending is not None else per_host * 8
        self.limits = Limits(per_host, pending, max_pending_per_sender or pending)
        self.budget = Budget(max_connections)
        self.policy = policy or NetworkPolicy()
        self._origins: dict[str, tuple[PartyUrl, int]] = {}
        self.ssl_context = ssl_context or ssl.create_default_context()
        self._deadlines: dict[Connection, float] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._pruner: asyncio.TimerHandle | None = None

    @property
    def pools(self) -> dict[tuple[str, int, bool], Pool]:
        return self.budget.pools

    @property
    def connections_in_use(self) -> int:
        return sum(p.in_use for p in self.pools.values())

    async def close(self) -> None:
        for timer in (self._sweeper, self._pruner):
            if timer is not None:
                timer.cancel()
        self._sweeper = self._pruner = None
        for pool in self.pools.values():
            while pool.idle:
                pool.idle.pop().abort()

    def target(self, url: str) -> tuple[Pool, bytes]:
        """The pool for ``url``'s origin and the request target; 4003 for a URL the hub may not call.

        URLs share their base per receiver endpoint, so the origin is parsed and validated once per base and the
        rest of the URL is only sliced (paths come from registered endpoints and checked suffixes)."""
        start = url.find("//") + 2
        slash, question = url.find("/", start), url.find("?", start)
        cut = slash if question < 0 or 0 <= slash < question else question
        base = url if cut < 0 else url[:cut]
        cached = self._origins.get(base)
        if cached is None:
            try:
                origin = parse_party_url(base)
            except PartyUrlError as exc:
                raise ReceiverUnreachableError(f"the receiver URL cannot be used: {exc}") from None
            if len(self._origins) > 10_000:
                self._origins.clear()
            cached = self._origins[base] = (origin, cut)
        path = "/" if cut < 0 else url[cut:] if url[cut] == "/" else "/" + url[cut:]
        if _UNSENDABLE.search(path) is not None:
            raise ReceiverUnreachableError("the receiver URL contains characters a request line cannot carry")
        origin = cached[0]
        key = (origin.host, origin.port, origin.tls)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = Pool(origin, self.limits, self.ssl_context, self.budget, self.policy)
            pool.last_used = pool.loop.time()  # a pool never used lives POOL_TTL too
            self._schedule_prune()
        return pool, path.encode("ascii")

    def open(
        self,
        method: str,
        url: str,
        headers: list[tuple[bytes, bytes]],
        body: Body,
        timeout: float,
        sender: str = HUB_SENDER,
    ) -> Call:
        """``async with outbound.open(...) as upstream``: send a request, read its answer; OCPI errors on failure.

        ``sender`` names who the request is for (the requesting platform), for the fair share of the pool."""
        return Call(self, method, url, headers, body, timeout, sender)

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

    # -- idle sweep: stale connections closed, unused pools dropped ---------------------------------------------

    def _schedule_prune(self) -> None:
        if self._pruner is None:
            self._pruner = asyncio.get_running_loop().call_later(PRUNE_INTERVAL, self._prune)

    def _prune(self) -> None:
        self._pruner = None
        now = asyncio.get_running_loop().time()
        for key, pool in list(self.pools.items()):
            pool.prune(now)
            if pool.unused and now - pool.last_used > POOL_TTL:
                del self.pools[key]
        # Idle connections that have become evictable since the last event are room for requests in line.
        self.budget.wake_any()
        if self.pools:
            self._schedule_prune()

    # -- control plane -------------------------------------------------------------------------------------------

    async def call_json(
        self,
        method: str,
        url: str,
        authorization: bytes,
        *,
        body: Any = None,
        timeout: float = 10.0,
        limit: int = MAX_JSON_ANSWER,
    ) -> JsonReply:
        """A control-plane call (versions, details, credentials, ClientInfo); 3001 when it fails in transport or
        answers with more than ``limit`` bytes."""
        # Requests the hub starts itself carry fresh ids too (transport_and_format §4.2).
        headers = [
            (h.AUTHORIZATION, authorization),
            (h.ACCEPT, b"application/json"),
            (h.X_REQUEST_ID, new_request_id()),
            (h.X_CORRELATION_ID, new_request_id()),
        ]
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers.append((h.CONTENT_TYPE, b"application/json"))
        try:
            async with self.open(method, url, headers, data, timeout) as upstream:
                raw = await upstream.read_whole(limit)
                status = upstream.status
                content_type = next(
                    (v.decode("latin-1") for n, v in upstream.headers if n.lower() == h.CONTENT_TYPE), ""
                )
        except OcpiError as exc:
            raise ClientApiError(f"{method} {url} failed: {exc.message}") from exc
        if raw is None:
            raise ClientApiError(f"{method} {url} failed: the answer is larger than {limit} bytes")
        try:
            parsed = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = None
        return JsonReply(status, parsed, content_type)
