"""The hub's ASGI application: a pure-ASGI entry that sends functional-module paths straight to the proxy and
everything else (versions, credentials, hubclientinfo, health, metrics) to a small Starlette app.

Owns: ``build_app(settings)``, the lifespan that opens and closes the per-process objects (Redis, snapshot,
outbound pool, background tasks), and the control-plane endpoints' HTTP glue.
Must not: hold routing logic (routing/) or registry logic (registry/); no per-request Starlette routing on
the functional-module prefix.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from config.settings import Settings
from hub import background, logs
from hub.clientinfo import ClientInfoService
from hub.credentials import CredentialsService, HubIdentity
from hub.envelope import envelope, render_error
from hub.forward import Outbound
from hub.metrics import HubMetrics, exposition
from hub.proxy import Proxy
from hub.runtime import Runtime, new_request_id
from hub.tasks import Tasks
from registry.connection import open_redis
from registry.keys import RegistryKeys
from registry.snapshot import SnapshotHolder
from registry.store import REGISTRY_ERRORS, PartyStore
from routing import errors
from routing import headers as h
from routing.model import PartyKey
from routing.paths import (
    CREDENTIALS_PATH,
    DETAILS_PATH,
    HUBCLIENTINFO_PATH,
    MODULE_PREFIX,
    RELAY_PREFIX,
    VERSIONS_PATH,
    match_module,
)
from routing.table import Caller

log = logging.getLogger("ocpihub.app")


class HubApp:
    """The ASGI callable a server runs."""

    def __init__(self, settings: Settings, metrics_registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.metrics_registry = metrics_registry
        self.identity = HubIdentity(
            PartyKey(settings.country_code, settings.party_id), settings.name, settings.base_url
        )
        self.runtime: Runtime | None = None
        self.proxy: Proxy | None = None
        self.control = Starlette(
            routes=[
                Route(VERSIONS_PATH, self.versions, methods=["GET"]),
                Route(DETAILS_PATH, self.details, methods=["GET"]),
                Route(DETAILS_PATH + "/", self.details, methods=["GET"]),
                Route(CREDENTIALS_PATH, self.credentials, methods=["GET", "POST", "PUT", "DELETE"]),
                Route(CREDENTIALS_PATH + "/", self.credentials, methods=["GET", "POST", "PUT", "DELETE"]),
                Route(HUBCLIENTINFO_PATH, self.hubclientinfo, methods=["GET"]),
                Route(HUBCLIENTINFO_PATH + "/", self.hubclientinfo, methods=["GET"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/readyz", self.readyz, methods=["GET"]),
                Route("/metrics", self.metrics, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._http_exception, Exception: self._unexpected},
            lifespan=self.lifespan,
        )

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
                    await self.proxy.relay_request(scope, receive, send, raw_path[len(RELAY_PREFIX) :].rstrip("/"))
                    return
        await self.control(scope, receive, send)

    # -- lifespan ------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        settings = self.settings
        async with AsyncExitStack() as stack:
            redis = await stack.enter_async_context(open_redis(settings.redis_url, settings.data_dir))
            store = PartyStore(redis, RegistryKeys(settings.key_prefix))
            holder = SnapshotHolder(store, self.identity.party, settings.snapshot_poll_interval)
            outbound = Outbound(
                max_connections=settings.max_connections,
                per_host=settings.max_connections_per_receiver,
                connect_timeout=settings.connect_timeout,
            )
            stack.push_async_callback(outbound.close)
            tasks = Tasks()
            rt = Runtime(
                settings=settings,
                store=store,
                holder=holder,
                outbound=outbound,
                metrics=HubMetrics(self.metrics_registry or CollectorRegistry()),
                tasks=tasks,
                hub=self.identity.party,
                base_url=settings.base_url,
            )
            self.runtime = rt
            self.clientinfo = ClientInfoService(rt, self.identity)
            self.credentials_service = CredentialsService(
                store, outbound, self.identity, settings.forward_timeout, self._registry_changed
            )
            try:
                await holder.reload()
                await store.set_public_url(settings.base_url)
            except REGISTRY_ERRORS as exc:
                log.warning("registry not reachable at start-up; retrying in the background: %s", exc)
            tasks.spawn("snapshot", holder.run())
            background.start(rt, self.clientinfo)
            self.proxy = Proxy(rt)
            log.info("hub ready", extra={"event": "start", "public_url": settings.base_url})
            try:
                yield
            finally:
                # Servers stop accepting and finish in-flight requests before the lifespan ends; fan-outs
                # already accepted get the drain time to finish (they were promised to the sender).
                await tasks.drain("broadcast:", settings.drain_time)
                await background.flush(rt)
                await tasks.cancel_all()
                self.proxy = None
                log.info("hub stopped", extra={"event": "stop"})
                logs.flush()

    async def _registry_changed(self, platform_id: str) -> None:
        # This process's own write is visible to its next request at once, not after the change notice.
        if self.runtime is not None:
            await self.runtime.holder.apply_own(platform_id)

    # -- control endpoints ---------------------------------------------------------------------------------

    def _rt(self) -> Runtime:
        if self.runtime is None:
            raise errors.ServerError("the hub is starting")
        return self.runtime

    def _caller(self, request: Request) -> Caller:
        rt = self._rt()
        value = request.headers.get("authorization")
        caller = rt.holder.table.authenticate(h.parse_authorization(value.encode("latin-1") if value else None))
        rt.seen[caller.platform.id] = time.time()
        return caller

    @staticmethod
    def _ids(request: Request) -> dict[str, str]:
        request_id = request.headers.get("x-request-id") or new_request_id().decode()
        correlation_id = request.headers.get("x-correlation-id") or new_request_id().decode()
        return {"X-Request-ID": request_id[:255], "X-Correlation-ID": correlation_id[:255]}

    def _ok(self, request: Request, data: Any, extra: dict[str, str] | None = None) -> Response:
        headers = self._ids(request) | (extra or {})
        return Response(envelope(1000, data=data), media_type="application/json", headers=headers)

    def _error(self, request: Request, error: errors.OcpiError) -> Response:
        status, body = render_error(error)
        return Response(body, status_code=status, media_type="application/json", headers=self._ids(request))

    async def versions(self, request: Request) -> Response:
        try:
            self._caller(request)
        except errors.OcpiError as error:
            return self._error(request, error)
        return self._ok(request, self.identity.versions())

    async def details(self, request: Request) -> Response:
        try:
            self._caller(request)
        except errors.OcpiError as error:
            return self._error(request, error)
        return self._ok(request, self.identity.details())

    async def credentials(self, request: Request) -> Response:
        try:
            caller = self._caller(request)
            service = self.credentials_service
            if request.method == "GET":
                return self._ok(request, service.get(caller))
            if request.method == "DELETE":
                await service.unregister(caller)
                log.info("unregistered", extra={"event": "unregister", "platform": caller.platform.id})
                return self._ok(request, None)
            body = await request.body()
            if len(body) > self.settings.max_body_size:
                raise errors.BodyTooLargeError("request body too large")
            record, answer = await service.register(caller, body, update=request.method == "PUT")
            log.info(
                "registered",
                extra={
                    "event": "register" if request.method == "POST" else "credentials_update",
                    "platform": record.id,
                    "parties": [str(r) for r in record.roles],
                },
            )
            if request.method == "POST":
                self.clientinfo.welcome(record.id)
            return self._ok(request, answer)
        except errors.OcpiError as error:
            log.info(
                "credentials refused",
                extra={
                    "event": "credentials_refused",
                    "method": request.method,
                    "ocpi_status": error.ocpi_status,
                    "reason": error.message,
                },
            )
            return self._error(request, error)

    async def hubclientinfo(self, request: Request) -> Response:
        try:
            caller = self._caller(request)
            if not caller.registered:
                raise errors.UnauthorizedError("credentials token A is valid for credentials and versions only")
            # The next-page Link is built on the public URL, never on the Host the request happened to use.
            page = await self.clientinfo.page(request.query_params, self.identity.base_url + HUBCLIENTINFO_PATH)
        except errors.OcpiError as error:
            return self._error(request, error)
        return self._ok(request, page.items, page.headers)

    async def healthz(self, _request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def readyz(self, _request: Request) -> Response:
        rt = self.runtime
        ready = rt is not None and rt.holder.loaded and rt.holder.reachable
        if ready and rt is not None:
            try:
                ready = await rt.store.ping()
            except REGISTRY_ERRORS:
                ready = False
        body = b'{"status":"ready"}' if ready else b'{"status":"not ready"}'
        return Response(body, status_code=200 if ready else 503, media_type="application/json")

    async def metrics(self, _request: Request) -> Response:
        rt = self._rt()
        content, content_type = exposition(rt.metrics, rt.holder, rt.outbound)
        return Response(content, media_type=content_type)

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        error: errors.OcpiError
        if status == 405:
            error = errors.MethodNotAllowedError(f"{request.method} is not allowed here")
        else:
            error = errors.NotFoundError(f"no OCPI endpoint at {request.url.path}")
        return self._error(request, error)

    async def _unexpected(self, request: Request, exc: Exception) -> Response:
        log.error("unexpected failure on %s", request.url.path, exc_info=exc)
        return self._error(request, errors.ServerError("internal error"))


def build_app(settings: Settings, metrics_registry: CollectorRegistry | None = None) -> HubApp:
    return HubApp(settings, metrics_registry)
