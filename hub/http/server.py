"""uvicorn's httptools protocol, made fit for a hub on the public internet.

Owns, for every client connection under ``--server uvicorn``:
- bounds on what a client may send before the hub spends work on it — header count, header line and head size
  (answered 431 with an OCPI envelope before the app sees the request), the time a head may take to arrive
  (a slow or silent client is answered 408 and closed: slowloris), and connections per process (past the
  limit a new connection is answered 503 and closed at once);
- OCPI envelopes for requests the HTTP parser refuses (CR, LF or other control characters: HTTP 400, 2001);
- an ``ocpihub.abort`` ASGI extension, so the proxy can cut an answer whose receiver failed mid-stream without
  the server logging a traceback for a party's failure;
- an ``ocpihub.respond`` ASGI extension: a whole response (status, headers, body) framed with its Content-Length
  and checked in one pass, instead of uvicorn's ``send`` twice (two regexes per header, chunked framing when no
  length is given) — what every answer the hub has whole goes through;
- gathering the writes of one response into one system call at the end of the event-loop step (uvicorn writes head
  and body separately): the answers of one step leave together, and the requesters are woken once for them rather
  than once per write between the step's Python work (measured: writing each answer at once cost the hub ~25 µs
  more CPU per routed GET, pinned A/B; benchmarks/RESULTS.md has the end-to-end figures).
It builds on uvicorn internals (``on_message_begin``/``on_url``/``on_header``/``on_headers_complete``,
``on_response_complete``, ``send_400_response``, ``url``, ``scope``, ``connections``, ``server_state``,
``cycle``/``pipeline``/``flow`` and a cycle's ``scope``/``keep_alive``/``response_started``/``response_complete``/
``disconnected``/``message_event``/``waiting_for_100_continue``/``on_response``); pyproject bounds
uvicorn to the tested range and tests/unit/hub/http/test_server_contract.py fails loudly if a release moves them.
Must not: change how requests are parsed or what is written once a request is accepted.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import re
import weakref
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from hub.envelope import ABORT, RESPOND, envelope

_REASONS: Final = {
    400: b"Bad Request",
    408: b"Request Timeout",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}
#: The OCPI status_code of each refusal (status_codes §5): a malformed or oversized head is 2001 (invalid
#: parameters), a head too slow to arrive the client's fault too (2000), a full hub the hub's (3000).
_OCPI_STATUS: Final = {400: 2001, 408: 2000, 431: 2001, 503: 3000}
#: The metric label of each refusal (hub/metrics.py ``ocpihub_http_refusals_total``); "idle": a connection that sent
#: nothing within the head timeout, closed without an answer.
REFUSAL_REASONS: Final = {
    400: "malformed",
    408: "head_timeout",
    431: "head_too_large",
    503: "too_many_connections",
    0: "idle",
}
#: Refusals of this process so far, by reason: read by the metrics, never reset (a counter's source).
REFUSALS: Final[collections.Counter[str]] = collections.Counter()
#: Seconds a refused connection stays open for reading (and dropping) what the client still sends, after the
#: answer and a FIN: closing at once would reset it, and a client still writing its head would never read the
#: answer (RFC 9112 §9.6, "tear-down").
LINGER: Final = 2.0
#: ... and at most this much of it: a flood is cut off (reset) past it, as nginx's lingering close does by time.
LINGER_BYTES: Final = 8 * 1024 * 1024
_STATUS_LINES: Final = {int(s): b"HTTP/1.1 %d %s\r\n" % (s, s.phrase.encode("ascii")) for s in HTTPStatus}
#: Every byte a response head may carry but its line ends: HTAB, visible ASCII and obs-text (RFC 9110 §5.5). Taken
#: out of a head, what is left must be exactly its CRLFs: a control character, DEL or a CR/LF inside a value (which
#: would split the response) leaves more.
_NOT_CONTROL: Final = bytes(b for b in range(256) if b == 0x09 or 0x20 <= b <= 0x7E or b >= 0x80)
#: Header names: tokens only (RFC 9110 §5.1), checked over all names of a head at once.
_TOKENS: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Header names found to be tokens: the hub answers with a few dozen names, checked once each (bounded anyway).
_CHECKED_NAMES: Final[set[bytes]] = set()
_CHECKED_NAMES_MAX: Final = 1024


def _valid_names(names: list[bytes]) -> bool:
    if _CHECKED_NAMES.issuperset(names):
        return True
    if b"" in names or _TOKENS.fullmatch(b"".join(names)) is None:
        return False
    if len(_CHECKED_NAMES) > _CHECKED_NAMES_MAX:
        _CHECKED_NAMES.clear()
    _CHECKED_NAMES.update(names)
    return True


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """What one client may send as a request head, and how many connections a process keeps."""

    max_headers: int = 100
    max_header_line: int = 8192
    max_head: int = 32_768
    head_timeout: float = 10.0
    max_connections: int = 4096


class _Refused(Exception):
    """A request head over the limits: the parser stops, the refusal is sent instead."""


class CorkedTransport:
    """A transport whose writes within one event-loop step are joined into one."""

    __slots__ = ("_buffer", "_loop", "_scheduled", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes) -> None:
        self._buffer.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if self._buffer:
            data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
            self._buffer.clear()
            if not self.transport.is_closing():
                self.transport.write(data)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def abort(self) -> None:
        self._buffer.clear()
        self.transport.abort()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)  # get_extra_info, set_protocol, pause/resume_reading, ...


class OcpiHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[HeadLimits] = HeadLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn narrows the type
        super().connection_made(transport)
        self._corked = CorkedTransport(transport, self.loop)
        self.transport = self._corked  # type: ignore[assignment]  # same interface
        self._refusal: tuple[int, str] | None = None
        self._dropped = 0  # bytes read and dropped after a refusal
        self._deferred = False  # a refusal waiting for the answers to earlier requests on this connection
        #: Bytes of the current head: counted off the wire before parsing, and from the parsed parts.
        self._head_bytes = 0
        self._in_head = True
        self._head_seen = False
        self._tail = b""  # the last bytes of the previous read: a head's end may straddle two reads
        self._head_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.limits.head_timeout, self._head_timed_out
        )
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, "the hub has too many open connections; try again shortly")

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            # Refused: the answer is on its way and the connection closing; what still comes is dropped, up to
            # a bound (LINGER_BYTES) past which the connection is cut.
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                self.transport.abort()
            return
        if self._in_head and data:
            # Counted before parsing: httptools joins a header's pieces by copying (quadratic in its size), so a head
            # over the bound is refused before the parser sees more of it. Body bytes in the same read are not head.
            self._head_seen = True
            self._head_bytes += self._head_part(data)
            if self._head_bytes > self.limits.max_head:
                self._refuse(431, f"the request head is larger than {self.limits.max_head} bytes")
                return
        super().data_received(data)
        if self._in_head and self._head_seen and self._head_timer is None and self._refusal is None:
            # A head begun but not complete after this read: from now on it has head_timeout to arrive.
            self._head_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)

    def _head_part(self, data: bytes) -> int:
        """How many bytes of ``data`` belong to the current head: up to its end, or all when it does not end here."""
        tail = self._tail
        if tail:
            joined = tail + data[:3]
            end = joined.find(b"\r\n\r\n")
            if end >= 0:
                return end + 4 - len(tail)
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            return end + 4
        self._tail = (tail + data)[-3:] if len(data) < 3 else data[-3:]
        return len(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_seen = True
        # No timer here: most heads complete within the read that begins them (data_received starts one for a
        # head still incomplete after its read), and a timer made and cancelled per request is measurable.

    def on_url(self, url: bytes) -> None:
        # Only the request line's length is checked per piece (the line may arrive in many reads); headers are
        # checked once, complete (on_headers_complete): their bytes are bounded off the wire before parsing.
        if len(self.url) + len(url) > self.limits.max_header_line:
            self._refusal = (431, f"the request line is longer than {self.limits.max_header_line} bytes")
            raise _Refused
        super().on_url(url)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_seen = False
        self._head_bytes = 0
        self._tail = b""
        self._stop_head_timer()
        self._check_headers()
        # Before uvicorn creates the request's task: the app must find the extensions however early it runs.
        scope = self.scope
        extensions: dict[str, Any] = scope.setdefault("extensions", {})
        extensions[ABORT] = self._abort
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is scope:  # the request's own cycle (also when pipelined)
            # By weak reference: the scope holds the extension and the cycle holds the scope, and a strong reference
            # would make every request a reference cycle left to the garbage collector (measured: ~10 µs a request).
            extensions[RESPOND] = functools.partial(self._respond, weakref.ref(cycle))

    def _check_headers(self) -> None:
        """Header count, line length and the parsed head's size: what the count off the wire cannot see (a
        pipelined head in the same read). Refused here, before uvicorn creates the request's task."""
        headers = self.headers
        limits = self.limits
        if len(headers) > limits.max_headers:
            self._refusal = (431, f"more than {limits.max_headers} request headers")
            raise _Refused
        size = len(self.url)
        longest = 0
        for name, value in headers:
            line = len(name) + len(value)
            size += line
            if line > longest:
                longest = line
        if longest + 4 > limits.max_header_line:
            self._refusal = (431, f"a request header line is longer than {limits.max_header_line} bytes")
            raise _Refused
        if size + 4 * len(headers) > limits.max_head:
            self._refusal = (431, f"the request head is larger than {limits.max_head} bytes")
            raise _Refused

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._deferred and not self._answering() and self._refusal is not None:
            self._deferred = False
            self._refuse(*self._refusal)

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:
            status, message = self._refusal
            self._refusal = None
            self._refuse(status, message)
            return
        self._refuse(400, f"malformed HTTP request: {msg}")

    async def _respond(
        self,
        cycle_ref: weakref.ref[RequestResponseCycle],
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        """``http.response.start`` and one final ``http.response.body`` in one: the head framed with Content-Length
        (none, and no body, for 1xx/204/304; no body for HEAD), checked as uvicorn checks it (token names, no control
        characters in values) but over the whole head at once, and handed with the body to the connection's corked
        writer: one write, at the end of the loop step. The cycle ends as uvicorn's own ``send`` ends it: complete,
        keep-alive honoured, the next pipelined request started."""
        cycle = cycle_ref()
        if cycle is None:  # its request is over: nobody can be waiting for this answer
            return
        if cycle.response_started:
            raise RuntimeError("ocpihub.respond after the response started")
        if self.flow.write_paused and not cycle.disconnected:
            await self.flow.drain()  # a client not reading its answers gets no more of them buffered (as uvicorn)
        if cycle.disconnected:
            return
        line = _STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status
        parts = [line]
        for name, value in self.server_state.default_headers:
            parts += (name, b": ", value, b"\r\n")
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        names = parts[1::4]
        count = len(names)
        framed = status >= 200 and status not in (204, 304)
        if framed:
            parts.append(b"content-length: %d\r\n" % len(body))
        if not cycle.keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        head = b"".join(parts)
        lines = len(parts) - 3 * count  # the status line, one per header (four parts), the framing lines, the empty one
        if head.translate(None, _NOT_CONTROL) != b"\r\n" * lines or not _valid_names(names):
            raise RuntimeError("invalid HTTP header name or value")  # a CR/LF in a value would split the response
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        if framed and body and cycle.scope["method"] != "HEAD":
            head += body
        self._corked.write(head)
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        cycle.on_response()

    # -- refusals ------------------------------------------------------------------------------------------------

    def _answering(self) -> bool:
        """An earlier request on this connection is still being answered (or queued behind one: pipelining)."""
        cycle = self.cycle
        return (cycle is not None and not cycle.response_complete) or bool(self.pipeline)

    def _refuse(self, status: int, message: str) -> None:
        """Answer with an OCPI envelope and close; nothing of the request reaches the app.

        Behind a pipelined request still being answered, the refusal waits for that answer to be complete
        (on_response_complete) rather than cutting it off; what the client sends meanwhile is dropped."""
        self._refusal = (status, message)
        self._stop_head_timer()
        if self._answering():
            self._deferred = True
            return
        REFUSALS[REFUSAL_REASONS[status]] += 1
        body = envelope(_OCPI_STATUS[status], message)
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(b"".join(head) + body)
        if status in (400, 431) and transport.can_write_eof():
            # The client may still be sending the head it is refused for: FIN after the answer, then read and drop
            # its bytes (data_received) until it closes or LINGER ends.
            transport.write_eof()
            self.loop.call_later(LINGER, transport.close)
        else:
            transport.close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            if self._head_seen:
                self._refuse(408, f"the request head did not arrive within {self.limits.head_timeout:g} s")
            else:
                REFUSALS[REFUSAL_REASONS[0]] += 1
                self.transport.close()  # nothing was sent at all: no answer is owed

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _abort(self) -> None:
        """Cut the connection mid-answer: the client sees it broken, never a complete-looking response."""
        # Marked now, not when the transport reports the loss (a later loop step, on uvloop later still): an app
        # returning before then would otherwise make uvicorn log "returned without completing response" (ERROR).
        for cycle in (self.cycle, *(queued for queued, _app in self.pipeline)):
            if cycle is not None:
                cycle.disconnected = True
                cycle.message_event.set()
        self.transport.abort()


def protocol_for(limits: HeadLimits) -> type[OcpiHttpToolsProtocol]:
    """The protocol class uvicorn instantiates, bound to these limits."""
    return type("BoundOcpiHttpToolsProtocol", (OcpiHttpToolsProtocol,), {"limits": limits})
