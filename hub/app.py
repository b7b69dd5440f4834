"""The hub's ASGI application: composition and dispatch.

Owns: ``build_app(settings)``; the lifespan that builds the per-process objects (hub/runtime.py), starts the
background work and stops it in order; and the dispatch of each request — functional-module paths and relay URLs
straight to the proxy (no per-request Starlette routing on the hot path), everything else to the control plane.
Must not: hold routing logic (routing/), registry logic (registry/) or endpoint logic (hub/control.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CollectorRegistry
from starlette.types import Receive, Scope, Send

from config.settings import Settings
from hub import background, logs
from hub.admin import AdminListener, admin_app
from hub.clientinfo import ClientInfoService
from hub.control import ControlPlane, Services
from hub.credentials import CredentialsService
from hub.identity import HubIdentity
from hub.page import page_routes
from hub.proxy import Proxy
from hub.relay import Relays
from hub.runtime import Runtime, open_runtime
from registry.store import REGISTRY_ERRORS
from routing.model import PartyKey
from routing.paths import MODULE_PREFIX, RELAY_PREFIX, match_module

log = logging.getLogger("ocpihub.app")


class HubApp:
    """The ASGI callable a server runs."""

    def __init__(self, settings: Settings, metrics_registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.metrics_registry = metrics_registry
        self.identity = HubIdentity(
            PartyKey(settings.country_code, settings.party_id), settings.name, settings.base_url
        )
        self.services: Services | None = None
        self.proxy: Proxy | None = None
        self.control = ControlPlane(self.identity, lambda: self.services)
        #: The admin listener's port once started (``--admin-port 0`` picks a free one).
        self.admin_port: int | None = None

    @property
    def runtime(self) -> Runtime | None:
        return self.services.runtime if self.services is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.proxy is not None:
            path: str = scope["path"]
            if path.startswith(MODULE_PREFIX):
                # The raw path keeps the sender's percent-encoding for the receiver URL.
                raw = scope.get("raw_path")
                raw_path = raw.decode("latin-1") if raw else path
                matched = match_module(raw_path)
                if matched is not None:
                    await self.proxy.module_request(scope, receive, send, *matched)
                    return
                if raw_path.startswith(RELAY_PREFIX):
                    await self.proxy.relay_request(scope, receive, send, raw_path[len(RELAY_PREFIX) :])
                    return
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.control.app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """The ASGI lifespan protocol around ``running()``."""
        await receive()  # lifespan.startup
        try:
            running = self.running()
            await running.__aenter__()
        except OSError as exc:  # e.g. the admin port is taken: one clear line, the server exits
            log.error("the hub could not start: %s", exc)
            await send({"type": "lifespan.startup.failed", "message": f"the hub could not start: {exc}"})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown: the server has stopped accepting and finished its requests
        await running.__aexit__(None, None, None)
        await send({"type": "lifespan.shutdown.complete"})

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        settings = self.settings
        registry = self.metrics_registry or CollectorRegistry()
        async with open_runtime(settings, registry) as rt:
            clientinfo = ClientInfoService(rt, self.identity)
            credentials = CredentialsService(
                rt.store, rt.outbound, self.identity, settings.forward_timeout, rt.holder.apply_own
            )
            # The first load (which creates the first relay signing key if the registry has none) is the refresh
            # loop's own, made after it subscribed to change notices; start-up waits for that first attempt.
            rt.tasks.supervise("snapshot", rt.holder.run, rt.metrics.restarts_of)
            await rt.holder.first_attempt.wait()
            try:
                await rt.store.set_public_url(settings.base_url)
            except REGISTRY_ERRORS as exc:
                log.warning("registry not reachable at start-up; retrying in the background: %s", exc)
            rt.tasks.supervise("owner-index", rt.learner.run, rt.metrics.restarts_of)
            if rt.tracker is not None:
                rt.tasks.supervise("tracker", rt.tracker.run, rt.metrics.restarts_of)
            background.start(rt, clientinfo)
            relays = Relays(
                lambda: rt.holder.table,
                rt.store,
                settings.base_url,
                link_ttl=settings.link_ttl,
                callback_ttl=settings.callback_ttl,
            )
            self.proxy = Proxy(rt, relays)
            self.services = Services(rt, credentials, clientinfo)
            admin = AdminListener(
                admin_app(
                    self.control, lambda: self.services, settings.admin_token, page_routes(lambda: self.services)
                ),
                settings.admin_host or settings.host,
                settings.admin_port,
            )
            admin.start(rt.tasks.spawn)
            self.admin_port = admin.port
            log.info(
                "hub started",
                extra={"event": "start", "public_url": settings.base_url, "admin_port": admin.port},
            )
            logs.flush()
            if settings.listen_fd >= 0:
                # An inherited socket listens already (it did before this process started): ready now, and its
                # port is the socket's own, not the settings' (a test or a supervisor may have bound port 0).
                logs.ready(inherited_port(settings.listen_fd, settings.port), admin.port)
            else:
                rt.tasks.spawn("ready", self._announce_ready(settings.host, settings.port, admin.port))
            try:
                yield
            finally:
                await admin.stop()
                # Servers stop accepting and finish in-flight requests before the lifespan ends; fan-outs
                # already accepted get the drain time to finish (they were promised to the sender).
                await rt.tasks.drain("broadcast:", settings.drain_time)
                await background.flush(rt)
                await rt.learner.flush()
                if rt.tracker is not None:
                    await rt.tracker.flush()
                await rt.tasks.cancel_all()
                self.proxy = None
                self.services = None
                log.info("hub stopped", extra={"event": "stop"})
                logs.flush()

    async def _announce_ready(self, host: str, port: int, admin_port: int) -> None:
        """ "hub ready" once the server listens: the lifespan ends before the server binds its socket, so the line
        waits until a connection to the port is accepted (bounded), then is written at once."""
        probe = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_WAIT
        while loop.time() < deadline:
            try:
                _, writer = await asyncio.open_connection(probe, port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            writer.close()
            break
        logs.ready(port, admin_port)


def inherited_port(fd: int, fallback: int) -> int:
    """The port an inherited listening socket is bound to (read from a duplicate, so the server's stays open)."""
    with socket.socket(fileno=os.dup(fd)) as sock:
        name = sock.getsockname()
    return int(name[1]) if isinstance(name, tuple) else fallback


#: Longest wait for the server to listen before "hub ready" is written anyway.
READY_WAIT = 30.0


def build_app(settings: Settings, metrics_registry: CollectorRegistry | None = None) -> HubApp:
    return HubApp(settings, metrics_registry)
