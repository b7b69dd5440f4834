"""The endpoints the hub serves itself: versions and version details, credentials, Hub Client Info, health.

Owns: the HTTP glue of the control plane — a small Starlette app with these routes, authentication of their
callers against the routing snapshot, their envelopes and ids, and the log line of each credentials change.
Must not: route functional modules (hub/proxy.py does), hold registry logic (hub/credentials.py and
registry/store.py do), or be on the hot path.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.clientinfo import ClientInfoService
from hub.credentials import CredentialsService
from hub.envelope import envelope, render_error
from hub.identity import HubIdentity
from hub.ids import new_request_id
from hub.runtime import Runtime
from routing import errors
from routing import headers as h
from routing.paths import CREDENTIALS_PATH, DETAILS_PATH, HUBCLIENTINFO_PATH, VERSIONS_PATH
from routing.table import Caller

log = logging.getLogger("ocpihub.control")

_JSON = "application/json"


class ControlPlane:
    """The hub's own endpoints for one process; ``services`` answers None until the lifespan has started."""

    def __init__(self, identity: HubIdentity, services: Callable[[], Services | None]) -> None:
        self.identity = identity
        self.services = services
        methods = ["GET", "POST", "PUT", "DELETE"]
        routes = [Route(VERSIONS_PATH, self.versions, methods=["GET"])]
        # Configuration endpoints answer with or without a trailing slash (parties differ, digest §8.12).
        for path, endpoint, allowed in (
            (DETAILS_PATH, self.details, ["GET"]),
            (CREDENTIALS_PATH, self.credentials, methods),
            (HUBCLIENTINFO_PATH, self.hubclientinfo, ["GET"]),
        ):
            routes += [Route(path, endpoint, methods=allowed), Route(path + "/", endpoint, methods=allowed)]
        routes += [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
        ]
        self.app = Starlette(
            routes=routes, exception_handlers={HTTPException: self._http_exception, Exception: self._unexpected}
        )

    # -- helpers -------------------------------------------------------------------------------------------

    def _services(self) -> Services:
        services = self.services()
        if services is None:
            raise errors.ServerError("the hub is starting")
        return services

    def _caller(self, request: Request) -> Caller:
        rt = self._services().runtime
        value = request.headers.get("authorization")
        caller = rt.holder.table.authenticate(h.parse_authorization(value.encode("latin-1") if value else None))
        rt.seen[caller.platform.id] = time.time()
        return caller

    @staticmethod
    def _ids(request: Request) -> dict[str, str]:
        request_id = request.headers.get("x-request-id") or new_request_id().decode()
        correlation_id = request.headers.get("x-correlation-id") or new_request_id().decode()
        return {"X-Request-ID": request_id[: h.MAX_ID_LENGTH], "X-Correlation-ID": correlation_id[: h.MAX_ID_LENGTH]}

    def _ok(self, request: Request, data: Any, extra: dict[str, str] | None = None) -> Response:
        headers = self._ids(request) | (extra or {})
        return Response(envelope(1000, data=data), media_type=_JSON, headers=headers)

    def _error(self, request: Request, error: errors.OcpiError) -> Response:
        status, body = render_error(error)
        headers = self._ids(request)
        if isinstance(error, errors.RateLimitedError):
            headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
        return Response(body, status_code=status, media_type=_JSON, headers=headers)

    # -- endpoints -----------------------------------------------------------------------------------------

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
            services = self._services()
            service = services.credentials
            if request.method == "GET":
                return self._ok(request, service.get(caller))
            if request.method == "DELETE":
                await service.unregister(caller)
                log.info("unregistered", extra={"event": "unregister", "platform": caller.platform.id})
                return self._ok(request, None)
            body = await _read_bounded(request, services.runtime.settings.max_body_size)
            record, answer = await service.register(caller, body, update=request.method == "PUT")
            log.info(
                "registered",
                extra={
                    "event": "register" if request.method == "POST" else "credentials_update",
                    "platform": record.id,
                    "parties": [str(r) for r in record.roles],
                },
            )
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
            page = await self._services().clientinfo.page(
                request.query_params, self.identity.base_url + HUBCLIENTINFO_PATH
            )
        except errors.OcpiError as error:
            return self._error(request, error)
        return self._ok(request, page.items, page.headers)

    async def healthz(self, _request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=_JSON)

    async def readyz(self, _request: Request) -> Response:
        """200 while this process routes from a loaded snapshot kept fresh by a live refresh loop — also while
        the registry is unreachable (routing goes on from the snapshot); the body says which."""
        services = self.services()
        holder = services.runtime.holder if services is not None else None
        ready = holder is not None and holder.loaded and holder.refreshing
        reachable = holder is not None and holder.reachable
        body = {
            "status": "ready" if ready else "not ready",
            "registry": "reachable" if reachable else "unreachable",
            "snapshot_version": holder.table.version if holder is not None else None,
        }
        return Response(orjson.dumps(body), status_code=200 if ready else 503, media_type=_JSON)

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


async def _read_bounded(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is declared or turns out larger than ``limit``: a 100 MiB credentials
    PUT is not read into memory before it is refused."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise errors.BodyTooLargeError(f"request body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.BodyTooLargeError(f"request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class Services:
    """What the control endpoints use once the hub has started."""

    __slots__ = ("clientinfo", "credentials", "runtime")

    def __init__(self, runtime: Runtime, credentials: CredentialsService, clientinfo: ClientInfoService) -> None:
        self.runtime = runtime
        self.credentials = credentials
        self.clientinfo = clientinfo
