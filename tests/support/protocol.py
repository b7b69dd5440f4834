"""uvicorn's HTTP protocol without sockets: a fake transport that records what is written, in the test's loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from hub.http.server import HeadLimits, protocol_for


class FakeTransport(asyncio.Transport):
    """What uvicorn asks of a TCP transport, recording what is written."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.writes = 0
        self.closing = False
        self.aborted = False
        self.eof = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data
        self.writes += 1

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = self.aborted = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def make(cls: type[HttpToolsProtocol], app: ASGIApp) -> HttpToolsProtocol:
    """A protocol instance of ``cls`` serving ``app`` on the running loop (connect it with ``connection_made``)."""
    config = uvicorn.Config(app, lifespan="off", log_config=None)
    return cls(config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop())


async def settle(transport: FakeTransport, until: bytes) -> None:
    """Let the request task and the corked writes run until ``until`` was written (bounded)."""
    async with asyncio.timeout(2.0):
        while until not in transport.written:  # noqa: ASYNC110  # the transport has no event to wait on
            await asyncio.sleep(0)


@contextmanager
def fake_connection(app: ASGIApp) -> Iterator[tuple[HttpToolsProtocol, FakeTransport]]:
    """The hub's protocol (default limits, a 5 s head timeout) serving ``app`` on a fake connection, lost at the end."""
    protocol = make(protocol_for(HeadLimits(head_timeout=5.0)), app)
    transport = FakeTransport()
    protocol.connection_made(transport)
    try:
        yield protocol, transport
    finally:
        protocol.connection_lost(None)
