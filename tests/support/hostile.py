"""Hostile peers on loopback for the chaos suite (issue "Hold under faults and hostile traffic").

Owns: ``HostileReceiver`` — a raw asyncio HTTP/1.1 server that reads each request and then behaves as no honest
receiver would (never answers, answers a byte at a time, breaks off mid-answer, sends 100 MiB, sends headers
nobody should pass on), recording every request it got — and the raw client side: writing bytes no HTTP
library would send and reading an answer back byte-exact (Content-Length, chunked, or to the connection's end).
Must not: sleep to wait for a condition (the only sleeps are the scripted pace of a trickle), or outlive its
block: every connection is aborted and every handler task cancelled when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

#: The longest request head a hostile receiver reads (the hub's requests are a few hundred bytes).
MAX_HEAD: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RawRequest:
    """One request as a hostile receiver read it off the wire."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        lower = name.lower()
        return next((v for n, v in self.headers if n.lower() == lower), None)


#: What a receiver does once it has read a request: write (or not) and return; it may close the connection.
Behaviour = Callable[[RawRequest, asyncio.StreamWriter], Awaitable[None]]


def parse_head(head: bytes) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    """(method or status line's first word, target or status, headers) of a request or answer head."""
    lines = head.decode("latin-1").split("\r\n")
    first = lines[0].split(" ", 2)
    headers = tuple(
        (name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in lines[1:] if line)
    )
    return first[0], first[1] if len(first) > 1 else "", headers


def ocpi_body(data: object = None, status_code: int = 1000) -> bytes:
    """An OCPI envelope (transport_and_format §4.1.7) as bytes."""
    body: dict[str, object] = {"status_code": status_code, "timestamp": "2026-01-01T00:00:00Z"}
    if data is not None:
        body["data"] = data
    return orjson.dumps(body)


def answer_head(status: int = 200, headers: Sequence[tuple[bytes, bytes]] = (), length: int | None = None) -> bytes:
    """An HTTP/1.1 answer head; ``length`` adds Content-Length."""
    parts = [b"HTTP/1.1 %d X\r\n" % status]
    parts += [name + b": " + value + b"\r\n" for name, value in headers]
    if length is not None:
        parts.append(b"content-length: %d\r\n" % length)
    parts.append(b"\r\n")
    return b"".join(parts)


# -- behaviours ----------------------------------------------------------------------------------------------------


def answer(body: bytes, headers: Sequence[tuple[bytes, bytes]] = (), status: int = 200) -> Behaviour:
    """An ordinary answer with whatever headers the test wants the receiver to send."""
    content = (b"content-type", b"application/json")

    async def behave(_request: RawRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(answer_head(status, [content, *headers], len(body)) + body)
        await writer.drain()

    return behave


def slow(delay: float, body: bytes) -> Behaviour:
    """An ordinary answer after ``delay`` seconds (a slow back end)."""
    honest = answer(body)

    async def behave(request: RawRequest, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(delay)  # the receiver's scripted slowness
        await honest(request, writer)

    return behave


def hang() -> Behaviour:
    """Read the request, never answer (until the connection ends or the server stops)."""

    async def behave(_request: RawRequest, writer: asyncio.StreamWriter) -> None:
        await writer.wait_closed()  # the hub gives up and aborts the connection (or the server stops)

    return behave


def stall(head: bytes) -> Behaviour:
    """Send an answer's head (promising a body), then nothing more."""

    async def behave(_request: RawRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(head)
        await writer.drain()
        await writer.wait_closed()

    return behave


def trickle(whole: bytes, interval: float) -> Behaviour:
    """Send ``whole`` (head and body) one byte every ``interval`` seconds."""

    async def behave(_request: RawRequest, writer: asyncio.StreamWriter) -> None:
        for at in range(len(whole)):
            writer.write(whole[at : at + 1])
            await writer.drain()
            await asyncio.sleep(interval)  # the scripted pace of a hostile receiver, not a wait for a condition

    return behave


def cut_off(declared: int, sent: int, *, reset: bool = False) -> Behaviour:
    """Promise ``declared`` body bytes, send ``sent`` of them, then close (FIN) or, with ``reset``, abort (RST)."""

    async def behave(_request: RawRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(answer_head(200, [(b"content-type", b"application/json")], declared) + b"x" * sent)
        await writer.drain()
        if reset:
            writer.transport.abort()
        else:
            writer.close()

    return behave


def stream(size: int, *, cut_at: int | None = None, piece: int = 256 * 1024) -> Behaviour:
    """Answer ``size`` body bytes (Content-Length), written as the hub takes them; with ``cut_at`` the connection is
    aborted after that many body bytes."""
    chunk = b"x" * piece

    async def behave(_request: RawRequest, writer: asyncio.StreamWriter) -> None:
        writer.write(answer_head(200, [(b"content-type", b"application/octet-stream")], size))
        sent = 0
        limit = size if cut_at is None else cut_at
        while sent < limit:
            part = chunk if limit - sent >= piece else chunk[: limit - sent]
            writer.write(part)
            sent += len(part)
            await writer.drain()
        if cut_at is not None:
            writer.transport.abort()

    return behave


# -- the server ----------------------------------------------------------------------------------------------------


@dataclass
class HostileReceiver:
    """A raw HTTP/1.1 server on 127.0.0.1 that reads requests and hands each to ``behaviour``."""

    behaviour: Behaviour = field(default_factory=lambda: answer(ocpi_body()))
    requests: list[RawRequest] = field(default_factory=list)
    port: int = 0
    _arrived: asyncio.Condition | None = None
    _tasks: set[asyncio.Task[object]] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_requests(self, count: int, timeout: float = 5.0) -> None:
        """Wait (bounded) until at least ``count`` requests have arrived."""
        assert self._arrived is not None, "the receiver is not running"
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._exchanges(reader, writer)
        except asyncio.CancelledError:
            # Stopped by ``running()``: end quietly. asyncio's start_server asks a cancelled handler task for its
            # exception and logs the CancelledError as an "unhandled exception" (Python 3.11).
            return

    async def _exchanges(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            while not writer.is_closing():
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                method, target, headers = parse_head(head[:-4])
                length = next((int(v) for n, v in headers if n.lower() == "content-length"), 0)
                try:
                    body = await reader.readexactly(length) if length else b""
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests.append(RawRequest(method, target, headers, body))
                assert self._arrived is not None
                async with self._arrived:
                    self._arrived.notify_all()
                try:
                    await self.behaviour(self.requests[-1], writer)
                except ConnectionError:
                    return
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
            self._tasks.discard(task)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[HostileReceiver]:
        self._arrived = asyncio.Condition()
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_HEAD)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=5)
            await server.wait_closed()


# -- the raw client ------------------------------------------------------------------------------------------------


class IncompleteAnswerError(Exception):
    """The connection ended before the answer was complete."""


@dataclass(frozen=True, slots=True)
class RawAnswer:
    """An answer as read off the wire."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        lower = name.lower()
        return next((v for n, v in self.headers if n.lower() == lower), None)

    def json(self) -> Any:  # a JSON edge
        return orjson.loads(self.body)


async def read_answer(reader: asyncio.StreamReader) -> RawAnswer:
    """One answer: head, then a body by Content-Length, chunked, or to the connection's end.

    Raises IncompleteAnswerError when the connection ends first (a chunked body without its last chunk is not
    complete, however much of it came)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        raise IncompleteAnswerError(f"the connection ended in the head after {len(exc.partial)} bytes") from None
    _version, status, headers = parse_head(head[:-4])
    answer = RawAnswer(int(status), headers, b"")
    try:
        if (answer.header("transfer-encoding") or "").lower() == "chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
                if size == 0:
                    break
            body = b"".join(parts)
        elif answer.header("content-length") is not None:
            body = await reader.readexactly(int(answer.header("content-length") or 0))
        else:
            body = await reader.read()
    except asyncio.IncompleteReadError as exc:
        raise IncompleteAnswerError(f"the connection ended in the body after {len(exc.partial)} bytes") from None
    return RawAnswer(answer.status, headers, body)


def request_bytes(
    method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes = b"", *, host: str = "hub"
) -> bytes:
    """A request head (and body) exactly as given: nothing added but Host."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", *(f"{n}: {v}" for n, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def exchange(port: int, data: bytes, timeout: float = 10.0) -> RawAnswer:
    """Write ``data`` on a new connection to 127.0.0.1:``port`` and read one answer (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        async with asyncio.timeout(timeout):
            writer.write(data)
            with contextlib.suppress(ConnectionError):
                await writer.drain()  # the hub may refuse and close before it has read everything
            return await read_answer(reader)
    finally:
        writer.transport.abort()


async def closed_within(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """Everything the peer sends until it closes the connection (bounded by ``timeout``)."""
    async with asyncio.timeout(timeout):
        chunks = []
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
        return b"".join(chunks)
