"""One outbound HTTP/1.1 connection to a party: an asyncio protocol with httptools' response parser.

Owns: writing one request at a time (at the end of the event-loop step, with the step's other writes; a large
body in pieces, each after the receiver took the last: write-side flow control, so a receiver that does not read
costs the hub a bounded buffer and the deadline still applies; an answer that comes before the body is taken ends
the writing), parsing the answer (Content-Length, chunked —
httptools decodes chunks — or delimited by the connection's end, RFC 9112 §6.3; interim 1xx answers skipped; HEAD
answers have no body; bytes after a complete answer are never part of it), read-side back-pressure on large
bodies, bounds on what a party may send back (header count and head size, like aiohttp's
``max_field_size``/``max_line_size``), and telling whether the connection may carry another request (a
half-closed, not fully read or not fully written connection never is).
Must not: choose connections or retry (hub/http/pool.py and client.py do), or look at bodies.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable
from typing import Final

import httptools

#: Read no further ahead of a slow requester than this; reading resumes below LOW_WATER.
HIGH_WATER: Final = 256 * 1024
LOW_WATER: Final = 64 * 1024
#: The most headers, and the largest head, a party's answer may have (aiohttp's defaults are 8190 bytes a line;
#: OCPI answers carry a handful of headers).
MAX_ANSWER_HEADERS: Final = 100
MAX_ANSWER_HEAD: Final = 64 * 1024
#: A request body larger than this is handed to the transport in pieces of this size, each once the transport's
#: buffer is below its high-water mark again (asyncio's default: 64 KiB).
WRITE_PIECE: Final = 64 * 1024


class ClosedError(Exception):
    """The connection ended before the answer was complete (or the answer was not valid HTTP)."""


class ExpiredError(Exception):
    """The request's deadline passed."""


class _Unsolicited(Exception):
    """An answer began after the exchange's answer was complete: nothing the hub asked for."""


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection to a receiver, carrying one exchange at a time."""

    def __init__(self, on_lost: Callable[[Connection], None], loop: asyncio.AbstractEventLoop) -> None:
        #: Told when the connection ends, either side (its pool stops counting it).
        self.on_lost = on_lost
        self.loop = loop  # the pool's: asyncio.get_running_loop() is a system call per use (see Pool.loop)
        self.transport: asyncio.WriteTransport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.paused = False
        self.write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._reset()

    def _reset(self, method: str = "") -> None:
        if self.paused and self.transport is not None:
            self.transport.resume_reading()  # type: ignore[attr-defined]  # a body taken whole left it paused
        self.head_request = method == "HEAD"
        self.high_water = HIGH_WATER
        self.received_before_head = 0
        self.interim = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.paused = False
        self.head_done = False
        self.complete = False
        self.received_any = False
        self.keep_alive = False
        #: The request body was not all handed to the transport (the answer came first): never reused.
        self.unsent = False
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
            if isinstance(exc.__context__, _Unsolicited):
                self.keep_alive = False  # the answer itself is whole; the connection is not to be trusted again
            else:
                self._fail(ClosedError(f"malformed answer: {exc}"))
            self.abort()
            return
        if not self.head_done:
            # Counted after parsing: a head still unfinished past the bound is too large, whatever its lines are.
            self.received_before_head += len(data)
            if self.received_before_head > MAX_ANSWER_HEAD:
                self._fail(ClosedError("the answer's head is too large"))
                self.abort()

    def eof_received(self) -> bool | None:
        return None  # close our side too: a half-closed connection is never reused

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self.resume_writing()
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
            self._fail(ClosedError("connection closed by the receiver"))
        self.on_lost(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    # -- httptools callbacks ---------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:
            # More bytes after the complete answer (a second answer in the same read, a stray 408 on an idle
            # connection): they belong to no request. Stop here, so they can never be read as part of this body
            # or as the answer to the next request.
            raise _Unsolicited

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if len(self.headers) >= MAX_ANSWER_HEADERS or self.head_size > MAX_ANSWER_HEAD:
            # A party may not make the hub hold an unbounded head (nor pass one on).
            self._fail(ClosedError("the answer's head is too large"))
            self.abort()
            return
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # An interim answer (100 Continue, 103 Early Hints): the final one follows on this connection.
            self.interim = True
            self.headers = []
            self.head_size = 0
            return
        if self.error is not None:
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
        if self.complete:
            return  # a body after a HEAD answer (which has none, RFC 9110 §9.3.2): not passed on
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > self.high_water and not self.paused and self.transport is not None:
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
        drained = self._drained  # a writer waiting for room stops for the answer, a failure or the deadline
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self._wake()

    def expire(self) -> None:
        self._fail(ExpiredError())
        self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def _wait(self) -> None:
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    async def send(self, method: str, head: bytes, body: bytes | None) -> None:
        """Write one request; a large body in pieces, waiting while the receiver reads slower than the hub writes.

        Returns early, with the rest of the body unsent, when the receiver answers first (e.g. 413 before reading
        the body): the answer is what the caller wants, and the connection is then not reused."""
        self._reset(method)
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ClosedError("connection closing")
        if not body or len(body) <= WRITE_PIECE:
            # One write, one segment, at the end of this event-loop step with the step's other writes: a receiver is
            # woken once for the requests of a step rather than once per request between the step's Python work
            # (measured: ~4 µs less hub CPU per routed GET pinned, more under load; benchmarks/RESULTS.md).
            self.loop.call_soon(self._write_soon, head + body if body else head)
            return
        transport.write(head)
        view = memoryview(body)
        for at in range(0, len(body), WRITE_PIECE):
            if self.write_paused and not await self._writable():
                self.unsent = True
                return
            transport.write(view[at : at + WRITE_PIECE])

    def _write_soon(self, data: bytes) -> None:
        transport = self.transport  # gone or closing meanwhile (aborted by a deadline): the exchange has failed
        if transport is not None and not transport.is_closing():
            transport.write(data)

    async def _writable(self) -> bool:
        """Wait until the transport takes more; False when the answer's head came first. Raises on failure."""
        while self.write_paused:
            self._drained = self.loop.create_future()
            try:
                await self._drained
            finally:
                self._drained = None
            if self.error is not None:
                raise self.error
            if self.head_done:
                return False
            if self.closed:
                raise ClosedError("connection closed by the receiver")
        return True

    async def head(self) -> None:
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self._wait()
        if self.error is not None:
            raise self.error

    def take_buffered(self) -> bytes:
        """Everything of the body that has arrived, resuming reads if they were paused."""
        body = b"".join(self.chunks)
        self.chunks.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()  # type: ignore[attr-defined]  # see on_body
        return body

    async def read_whole(self, limit: int) -> bytes | None:
        """The whole body when it is at most ``limit`` bytes (waiting for the rest), else None with nothing taken."""
        self.high_water = max(HIGH_WATER, limit)
        if self.paused and self.buffered <= limit and self.transport is not None:
            self.paused = False  # back-pressure paused reading below what is wanted whole: read on
            self.transport.resume_reading()  # type: ignore[attr-defined]  # see on_body
        while not self.complete:
            if self.error is not None:
                raise self.error
            if self.buffered > limit:
                self.high_water = HIGH_WATER  # streamed from here on: the usual back-pressure
                return None
            await self._wait()
        if self.buffered > limit:
            self.high_water = HIGH_WATER
            return None
        return self.take_buffered()

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
        """The answer was read to its end, the receiver keeps the connection, and the request left it whole."""
        transport = self.transport
        return (
            self.complete
            and self.keep_alive
            and not self.unsent
            and self.error is None
            and transport is not None
            and not self.closed
            # Bytes of the request still queued (the receiver answered before reading them) would precede the
            # next request: the receiver may never read them, and it may take them as part of the next one.
            and transport.get_write_buffer_size() == 0
        )
