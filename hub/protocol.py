"""uvicorn's httptools protocol with two changes for a proxy: refused requests get an OCPI envelope, and the
writes of one response leave in one system call.

A header value with CR, LF or another control character is not valid HTTP; the parser refuses it before the
hub sees it. Parties still get what every other refusal gives them: JSON with status_code 2001 (HTTP 400).

uvicorn writes a response's head and body separately, each a send() on the socket; the hub answers with both
in the same event-loop step, so the writes are gathered and flushed once at the end of that step (measured:
benchmarks/RESULTS.md). Must not: change how requests are parsed or what is written.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hub.envelope import envelope


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

    def abort(self) -> None:
        self._buffer.clear()
        self.transport.abort()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)  # get_extra_info, set_protocol, pause/resume_reading, ...


class OcpiHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # uvicorn narrows the type
        super().connection_made(transport)
        self.transport = CorkedTransport(transport, self.loop)  # type: ignore[assignment]  # same interface

    def send_400_response(self, msg: str) -> None:
        body = envelope(2001, f"malformed HTTP request: {msg}")
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
