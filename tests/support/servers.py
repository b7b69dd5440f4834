"""Real HTTP servers on loopback inside the test's event loop: uvicorn on a socket bound to port 0."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Literal

import uvicorn
from starlette.types import ASGIApp

from hub.http.server import OcpiHttpToolsProtocol


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port where every connection is refused while the block runs: bound here and never listening, so no
    other process can start listening on it meanwhile (unlike a port found free and closed again)."""
    sock = bound_socket()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def bound_socket() -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets created with it, and without it every
    # keep-alive exchange waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def serve(
    app: ASGIApp,
    sock: socket.socket | None = None,
    lifespan: Literal["on", "off"] = "on",
    ocpi_parser: bool = False,
    http_protocol: type[asyncio.Protocol] | None = None,
) -> AsyncIterator[int]:
    """Serve ``app`` until the block ends; yields the port.

    The HTTP protocol is ``http_protocol`` when given (e.g. ``protocol_for(HeadLimits(...))``), else the hub's
    protocol with default limits when ``ocpi_parser``, else uvicorn's own. The server runs on the test's event loop,
    whatever kind it is (uvicorn's ``loop`` setting only matters when uvicorn creates the loop itself)."""
    sock = sock or bound_socket()
    port: int = sock.getsockname()[1]
    protocol: type[asyncio.Protocol] | Literal["httptools"] = http_protocol or (
        OcpiHttpToolsProtocol if ocpi_parser else "httptools"
    )
    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        log_config=None,
        access_log=False,
        loop="asyncio",
        http=protocol,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:  # uvicorn offers no start event
                if task.done():
                    task.result()
                    raise RuntimeError("server stopped during start-up")
                await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task
        sock.close()
