"""Running the hub under a real server: uvicorn (uvloop + httptools, the default) or hypercorn (HTTP/2, TLS).

Owns: the embedded-Redis decision for the whole process tree (started once in the parent, so every worker
shares it), handing the final settings to worker processes through OCPI_HUB_* variables, multiprocess metrics,
and graceful shutdown (stop accepting, finish in-flight requests and fan-outs within ``drain_time``).
Must not: contain request logic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import replace
from types import FrameType
from typing import Any

import uvloop

from config.settings import Settings, load_settings, to_environ
from hub import logs
from hub.app import HubApp, build_app, inherited_port
from hub.http.server import HeadLimits, OcpiHttpToolsProtocol
from registry.embedded import EmbeddedRedis

FACTORY = "hub.server:app_from_env"
#: uvicorn's exit status when the app could not start (e.g. the admin port is taken).
STARTUP_FAILURE = 3


def app_from_env() -> HubApp:
    """The app of one worker process, from the settings the parent put in its environment."""
    settings = load_settings(os.environ)
    logs.configure(settings.log_level)
    # Set per process (a worker imports the protocol class by name; a class made at run time would not pickle).
    OcpiHttpToolsProtocol.limits = head_limits(settings)
    return build_app(settings)


def run(settings: Settings) -> None:
    logs.configure(settings.log_level)
    embedded = None if settings.redis_url else EmbeddedRedis(settings.data_dir)
    if embedded is not None:
        settings = replace(settings, redis_url=embedded.url)
    settings = _with_listening_socket(settings)
    metrics_dir = None
    if settings.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Each worker writes its figures here and /metrics sums them (prometheus-client multiprocess mode).
        metrics_dir = tempfile.mkdtemp(prefix="ocpi-hub-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ.update(to_environ(settings))
    os.environ.pop("OCPI_HUB_CONFIG", None)  # the environment now carries the merged result
    # uvicorn restores the previous SIGTERM handler after its graceful shutdown and raises the signal again;
    # with the default handler that kills the process before the embedded Redis is stopped. A handler of our
    # own makes that second delivery harmless, so shutdown ends in the finally below with exit status 0.
    signal.signal(signal.SIGTERM, _stopped)
    try:
        if settings.server == "hypercorn":
            _run_hypercorn(settings)
        else:
            _run_uvicorn(settings)
    finally:
        if embedded is not None:
            embedded.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _with_listening_socket(settings: Settings) -> Settings:
    """The settings with the port the hub really serves on, before anything derives a URL from it: an inherited
    socket's own port, or for ``--port 0`` the free port of a socket bound here and served as an inherited one.
    Without this the public URL (versions, the registry's record of it) would name a port nothing listens on."""
    if settings.listen_fd < 0 and settings.port == 0:
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        sock = socket.create_server((settings.host, 0), family=family, backlog=2048)
        sock.set_inheritable(True)  # workers are spawned processes: the descriptor must survive into them
        settings = replace(settings, listen_fd=sock.detach())
    if settings.listen_fd >= 0:
        settings = replace(settings, port=inherited_port(settings.listen_fd, settings.port))
    return settings


def _stopped(_signum: int, _frame: FrameType | None) -> None:
    """Second delivery of SIGTERM after uvicorn's own graceful shutdown: nothing left to do."""


def _run_uvicorn(settings: Settings) -> None:
    import uvicorn

    OcpiHttpToolsProtocol.limits = head_limits(settings)
    config = uvicorn.Config(
        FACTORY,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http=OcpiHttpToolsProtocol,
        timeout_keep_alive=max(1, math.ceil(settings.keepalive_timeout)),
        lifespan="on",
        log_config=None,
        access_log=False,  # the hub writes one JSON line per routed request itself
        server_header=False,
        proxy_headers=False,  # the hub does not trust X-Forwarded-*; it also saves a middleware per request
        timeout_graceful_shutdown=max(1, math.ceil(settings.drain_time)),
        ssl_certfile=settings.certfile or None,
        ssl_keyfile=settings.keyfile or None,
        backlog=2048,
    )
    server = uvicorn.Server(config)
    # An inherited, already-listening socket (systemd socket activation, or a test that bound port 0) has its
    # family read from the descriptor itself (uvicorn's own fd= assumes a unix socket).
    sock = config.bind_socket() if settings.listen_fd < 0 else socket.socket(fileno=settings.listen_fd)
    if settings.workers > 1:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[sock]).run()
    else:
        server.run(sockets=[sock])
        if not server.started:
            sys.exit(STARTUP_FAILURE)


def head_limits(settings: Settings) -> HeadLimits:
    return HeadLimits(
        max_headers=settings.max_request_headers,
        max_header_line=settings.max_header_line,
        max_head=settings.max_head_size,
        head_timeout=settings.head_timeout,
        max_connections=settings.max_client_connections,
    )


def _run_hypercorn(settings: Settings) -> None:
    from hypercorn.config import Config

    config = Config()
    # hypercorn takes an inherited socket as an fd:// bind.
    config.bind = [f"fd://{settings.listen_fd}" if settings.listen_fd >= 0 else f"{settings.host}:{settings.port}"]
    config.workers = settings.workers
    config.graceful_timeout = settings.drain_time
    config.accesslog = None
    # hypercorn's own bounds on what a client sends (its protocols are not the hub's uvicorn subclass).
    config.keep_alive_timeout = settings.keepalive_timeout
    config.h11_max_incomplete_size = settings.max_head_size
    config.h2_max_header_list_size = settings.max_head_size
    config.read_timeout = int(settings.head_timeout)
    if settings.certfile:
        config.certfile = settings.certfile
        config.keyfile = settings.keyfile
        config.alpn_protocols = ["h2", "http/1.1"]
    if settings.workers > 1:
        from hypercorn.run import run as hypercorn_run

        config.application_path = FACTORY + "()"
        config.worker_class = "uvloop"
        hypercorn_run(config)
        return
    uvloop.run(_serve_hypercorn(config, settings.drain_time))


async def _serve_hypercorn(config: Any, drain_time: float) -> None:
    """One hypercorn worker whose shutdown is bounded by the drain time.

    hypercorn 0.18 waits for idle TLS connections past ``graceful_timeout`` (parties keep pooled connections
    open), so after the drain time plus a second the remaining connections are dropped.
    """
    from hypercorn.asyncio import serve

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    app: Any = app_from_env()  # an ASGI 3 app; hypercorn's own type spells out every scope variant
    server = asyncio.ensure_future(serve(app, config, shutdown_trigger=stop.wait))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait([server, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    try:
        await asyncio.wait_for(asyncio.shield(server), drain_time + 1.0)
    except TimeoutError:
        logging.getLogger("ocpihub.server").warning("connections still open after the drain time: closing them")
        server.cancel()
        # hypercorn reports its own cancellation as InvalidStateError from a gathered future.
        with contextlib.suppress(asyncio.CancelledError, asyncio.InvalidStateError):
            await server
