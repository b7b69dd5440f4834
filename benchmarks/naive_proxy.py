"""The naive reference proxy of the benchmarks issue: Starlette + one shared aiohttp ClientSession, ~40 lines.

It forwards every request to one upstream with the same path, query, method, headers and body, and answers
with the upstream's body, Content-Type and pagination headers (Link, X-Total-Count, X-Limit, untouched: the
Link still points at the upstream). No routing, no registry, no checks: the floor any hub must beat.
Run: ``python -m benchmarks.naive_proxy PORT UPSTREAM [WORKERS]``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

UPSTREAM = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:9000"
HOP = {"host", "content-length", "connection", "transfer-encoding"}
PASSED = ("content-type", "link", "x-total-count", "x-limit")
session: aiohttp.ClientSession | None = None


@asynccontextmanager
async def lifespan(_app: Starlette) -> AsyncIterator[None]:
    global session
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))
    yield
    await session.close()


async def proxy(request: Request) -> Response:
    assert session is not None
    headers = {k: v for k, v in request.headers.items() if k not in HOP}
    query = request.url.query
    url = UPSTREAM + request.url.path + (f"?{query}" if query else "")
    async with session.request(request.method, url, headers=headers, data=await request.body()) as upstream:
        body = await upstream.read()
        passed = {name: upstream.headers[name] for name in PASSED if name in upstream.headers}
        return Response(body, status_code=upstream.status, headers=passed)


app = Starlette(
    routes=[Route("/{path:path}", proxy, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])], lifespan=lifespan
)

if __name__ == "__main__":
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    uvicorn.run(
        "benchmarks.naive_proxy:app",
        host="127.0.0.1",
        port=int(sys.argv[1]),
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
