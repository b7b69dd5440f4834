"""A fake OCPI 2.2.1 platform (CPO, eMSP, ...) as a small Starlette app on loopback.

It publishes versions and details, serves credentials (for hub-initiated registration), records every request
it gets (method, path, query, headers, body bytes) and answers module requests with an OCPI envelope — or with
whatever a test's responder returns. It can also register at the hub as a real client would.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.servers import serve

MODULES = ("cdrs", "chargingprofiles", "commands", "locations", "sessions", "tariffs", "tokens")
ROLES = ("SENDER", "RECEIVER")


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


Responder = Callable[[Received], Awaitable[Response] | Response]


def ocpi(
    data: Any = None, status_code: int = 1000, http_status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    body: dict[str, Any] = {"status_code": status_code, "timestamp": "2026-01-01T00:00:00Z"}
    if data is not None:
        body["data"] = data
    return Response(orjson.dumps(body), status_code=http_status, media_type="application/json", headers=headers)


def token_header(token: str, base64_form: bool = True) -> str:
    return "Token " + (base64.b64encode(token.encode()).decode() if base64_form else token)


@dataclass
class FakeParty:
    """One platform with one or more (country_code, party_id, role)."""

    roles: list[tuple[str, str, str]]
    name: str = "fake"
    publish: set[tuple[str, str]] | None = None
    raw_tokens: bool = False
    token_b: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    token_a_for_hub: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    hub_token: str = ""
    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    clientinfo: dict[str, dict[str, Any]] = field(default_factory=dict)
    clientinfo_pushes: list[dict[str, Any]] = field(default_factory=list)
    responder: Responder | None = None
    versions_status: int = 200
    offline: bool = False
    versions_auth: list[str] = field(default_factory=list)
    #: Where the module endpoints it publishes live (default: this app); benchmarks point them at a fast stub.
    module_base: str = ""

    @property
    def versions_url(self) -> str:
        return self.base_url + "/ocpi/versions"

    def party(self, index: int = 0) -> tuple[str, str]:
        return self.roles[index][0], self.roles[index][1]

    def endpoint_url(self, module: str, role: str) -> str:
        return f"{self.module_base or self.base_url}/ocpi/2.2.1/{module}/{role.lower()}"

    def endpoints(self) -> list[dict[str, str]]:
        out = [{"identifier": "credentials", "role": "SENDER", "url": self.base_url + "/ocpi/2.2.1/credentials"}]
        out.append(
            {"identifier": "hubclientinfo", "role": "RECEIVER", "url": self.base_url + "/ocpi/2.2.1/hubclientinfo"}
        )
        for module in MODULES:
            for role in ROLES:
                if self.publish is None or (module, role) in self.publish:
                    out.append({"identifier": module, "role": role, "url": self.endpoint_url(module, role)})
        return out

    def credentials_roles(self) -> list[dict[str, Any]]:
        return [
            {"role": role, "party_id": pid, "country_code": cc, "business_details": {"name": self.name}}
            for cc, pid, role in self.roles
        ]

    def my_credentials(self) -> dict[str, Any]:
        return {"token": self.token_b, "url": self.versions_url, "roles": self.credentials_roles()}

    # -- server side -------------------------------------------------------------------------------------------

    def _authorized(self, request: Request, *tokens: str) -> bool:
        value = request.headers.get("authorization", "")
        return any(value in (token_header(t), token_header(t, False)) for t in tokens)

    async def _versions(self, request: Request) -> Response:
        self.versions_auth.append(request.headers.get("authorization", ""))
        if self.offline:
            return Response(b"down", status_code=503)
        if not self._authorized(request, self.token_b, self.token_a_for_hub):
            return ocpi(status_code=2000, http_status=401)
        if self.versions_status != 200:
            return Response(b"<html>nope</html>", status_code=self.versions_status, media_type="text/html")
        return ocpi([{"version": "2.2.1", "url": self.base_url + "/ocpi/2.2.1"}])

    async def _details(self, request: Request) -> Response:
        if not self._authorized(request, self.token_b, self.token_a_for_hub):
            return ocpi(status_code=2000, http_status=401)
        return ocpi({"version": "2.2.1", "endpoints": self.endpoints()})

    async def _credentials(self, request: Request) -> Response:
        """Receiver side of a hub-initiated registration: the hub POSTs with our token A."""
        if not self._authorized(request, self.token_a_for_hub):
            return ocpi(status_code=2000, http_status=401)
        theirs = orjson.loads(await request.body())
        async with httpx.AsyncClient() as client:
            versions = (
                await client.get(theirs["url"], headers={"Authorization": token_header(theirs["token"])})
            ).json()
            details_url = versions["data"][0]["url"]
            await client.get(details_url, headers={"Authorization": token_header(theirs["token"])})
        self.hub_token = theirs["token"]
        return ocpi(self.my_credentials())

    async def _hubclientinfo(self, request: Request) -> Response:
        if not self._authorized(request, self.token_b):
            return ocpi(status_code=2000, http_status=401)
        info = orjson.loads(await request.body())
        key = f"{request.path_params['cc']}:{request.path_params['pid']}:{info['role']}"
        self.clientinfo[key] = info
        self.clientinfo_pushes.append(info)
        return ocpi()

    async def _module(self, request: Request) -> Response:
        received = Received(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
        )
        self.received.append(received)
        if not self._authorized(request, self.token_b):
            return ocpi(status_code=2000, http_status=401)
        if self.responder is not None:
            result = self.responder(received)
            return await result if isinstance(result, Awaitable) else result
        h = received.headers
        return ocpi(
            {"party": self.party(), "method": received.method, "path": received.path, "body": received.body.decode()},
            headers={
                "X-Request-ID": h.get("x-request-id", ""),
                "X-Correlation-ID": h.get("x-correlation-id", ""),
                "OCPI-to-country-code": h.get("ocpi-from-country-code", ""),
                "OCPI-to-party-id": h.get("ocpi-from-party-id", ""),
                "OCPI-from-country-code": h.get("ocpi-to-country-code", ""),
                "OCPI-from-party-id": h.get("ocpi-to-party-id", ""),
            },
        )

    def app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(
            routes=[
                Route("/ocpi/versions", self._versions),
                Route("/ocpi/2.2.1", self._details),
                Route("/ocpi/2.2.1/credentials", self._credentials, methods=["POST"]),
                Route("/ocpi/2.2.1/hubclientinfo/{cc}/{pid}", self._hubclientinfo, methods=["PUT"]),
                Route("/ocpi/2.2.1/{module}/{role}", self._module, methods=methods),
                Route("/ocpi/2.2.1/{module}/{role}/{rest:path}", self._module, methods=methods),
            ]
        )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeParty]:
        async with serve(self.app(), lifespan="off") as port:
            self.base_url = f"http://127.0.0.1:{port}"
            yield self

    # -- client side -------------------------------------------------------------------------------------------

    async def register(self, hub_versions_url: str, token_a: str, method: str = "POST") -> httpx.Response:
        """The party-initiated handshake (credentials §7.1.1), as a real client does it."""
        auth = {"Authorization": token_header(token_a, not self.raw_tokens)}
        async with httpx.AsyncClient(timeout=20) as client:
            versions = (await client.get(hub_versions_url, headers=auth)).json()
            details = (await client.get(versions["data"][0]["url"], headers=auth)).json()
            credentials_url = next(e["url"] for e in details["data"]["endpoints"] if e["identifier"] == "credentials")
            reply = await client.request(method, credentials_url, headers=auth, json=self.my_credentials())
        if reply.status_code == 200 and reply.json().get("status_code") == 1000:
            self.hub_token = reply.json()["data"]["token"]
        return reply

    def headers_to(self, to: tuple[str, str], *, sender: int = 0, **extra: str) -> dict[str, str]:
        cc, pid = self.party(sender)
        headers = {
            "Authorization": token_header(self.hub_token, not self.raw_tokens),
            "OCPI-from-country-code": cc,
            "OCPI-from-party-id": pid,
            "OCPI-to-country-code": to[0],
            "OCPI-to-party-id": to[1],
            "X-Request-ID": secrets.token_hex(8),
            "X-Correlation-ID": secrets.token_hex(8),
        }
        headers.update(extra)
        return headers


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll a condition with a bounded wait (for things that happen in the background)."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110  # polling state another task changes, bounded
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None
