"""The admin listener: what the hub's operators (and Prometheus) use, on a port of its own.

Owns: the admin app — ``/metrics`` (Prometheus text), ``/healthz``, ``/readyz``, and the operator's page with its
JSON reads (hub/page.py) — an optional bearer token in front of all of it, and running it beside the public
server in every worker process (the port is shared with SO_REUSEPORT, so any worker may answer; metrics add up
across workers). Like Envoy's admin port or ingress-nginx's 10254, it is not the public OCPI port: /metrics is
not served to parties.
Must not: serve OCPI, change the registry, or show secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.control import ControlPlane, Services
from hub.metrics import exposition

log = logging.getLogger("ocpihub.admin")


class BearerToken:
    """Pure-ASGI gate: every admin request needs ``Authorization: Bearer <token>`` (constant-time compare)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = next((v for n, v in scope["headers"] if n == b"authorization"), b"")
            if not hmac.compare_digest(given, self.expected):
                response = Response(
                    b'{"error":"a bearer token is required"}',
                    status_code=401,
                    media_type="application/json",
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def admin_app(
    control: ControlPlane,
    services: Callable[[], Services | None],
    token: str,
    extra_routes: list[BaseRoute] | None = None,
) -> ASGIApp:
    """The admin listener's app: metrics and health, plus ``extra_routes`` (the operator's page)."""

    async def metrics(_request: Request) -> Response:
        current = services()
        if current is None:
            return Response(b"# the hub is starting\n", status_code=503, media_type="text/plain")
        rt = current.runtime
        dropped = rt.tracker.dropped if rt.tracker is not None else 0
        content, content_type = exposition(rt.metrics, rt.holder, rt.outbound, rt.leader, dropped, rt.learner.dropped)
        return Response(content, media_type=content_type)

    routes: list[BaseRoute] = [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", control.healthz, methods=["GET"]),
        Route("/readyz", control.readyz, methods=["GET"]),
        *(extra_routes or []),
    ]
    app: ASGIApp = Starlette(routes=routes)
    return BearerToken(app, token) if token else app


class _QuietServer(uvicorn.Server):
    """A uvicorn server that runs inside another server's process: that one handles the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_admin_socket(host: str, port: int) -> socket.socket:
    """The admin socket; SO_REUSEPORT lets every worker bind the same port and the kernel spreads connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class AdminListener:
    """The admin server of one process, started and stopped with the hub's lifespan."""

    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self.sock = bind_admin_socket(host, port)
        self.port: int = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app, lifespan="off", log_config=None, access_log=False, server_header=False, timeout_keep_alive=5
        )
        self.server = _QuietServer(config)
        self.task: asyncio.Task[Any] | None = None

    def start(self, spawn: Callable[[str, Coroutine[Any, Any, None]], asyncio.Task[Any]]) -> None:
        self.task = spawn("admin", self.server.serve(sockets=[self.sock]))

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.task), 5.0)
        self.sock.close()
