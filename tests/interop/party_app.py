"""A real extrawest-ocpi (``py_ocpi``) party for interop tests, run by the party venv's python (see ``venv.py``).

Owns: one OCPI 2.2.1 CPO or eMSP built with the library's own ``get_application`` (its routers, authentication,
pagination, credentials server and push code), an in-memory store behind the library's ``Crud`` interface, and a
small JSON control API under ``/_control`` that tests use to seed data, read what the party received and sent, and
make the party act as a client (registration, the library's push, plain requests serialised with its models).

Must not: import anything from the project (it runs in another virtualenv with pydantic 1 and fastapi 0.101), copy
library code, or contact anything but the URLs a test hands it. The library reads its settings from the environment
when it is first imported, so every ``py_ocpi`` import happens after ``configure_library_environment``.

Usage: ``python party_app.py --role CPO --country-code NL --party-id CPO --fd 3 --base-url http://127.0.0.1:PORT``
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import contextvars
import dataclasses
import enum
import importlib
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTROL_PREFIX = "/_control"
VERSION = "2.2.1"
#: The library's module names (py_ocpi.core.enums.ModuleID values) whose objects live in the store.
OBJECT_MODULES = ("locations", "sessions", "cdrs", "tariffs", "tokens")
#: Schema class of each object module, for seeding and for ``send`` (py_ocpi.modules.<module>.v_2_2_1.schemas).
OBJECT_MODELS = {"locations": "Location", "sessions": "Session", "cdrs": "Cdr", "tariffs": "Tariff", "tokens": "Token"}
HTTP_TIMEOUT = 10.0


# -- configuration -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PartyConfig:
    role: str  # "CPO" or "EMSP"
    country_code: str
    party_id: str
    name: str
    base_url: str  # http://127.0.0.1:PORT, what the library publishes
    fd: int
    token_a: str


def parse_args(argv: list[str]) -> PartyConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--role", choices=("CPO", "EMSP"), required=True)
    parser.add_argument("--country-code", required=True)
    parser.add_argument("--party-id", required=True)
    parser.add_argument("--name", default="")
    parser.add_argument("--base-url", required=True, help="public base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--fd", type=int, required=True, help="an inherited, bound TCP socket to serve on")
    parser.add_argument("--token-a", default="", help="token A for hub-initiated registration (default: random)")
    ns = parser.parse_args(argv)
    return PartyConfig(
        role=ns.role,
        country_code=ns.country_code,
        party_id=ns.party_id,
        name=ns.name or f"extrawest-ocpi {ns.role} {ns.country_code}*{ns.party_id}",
        base_url=ns.base_url.rstrip("/"),
        fd=ns.fd,
        token_a=ns.token_a or secrets.token_hex(16),
    )


def configure_library_environment(config: PartyConfig) -> None:
    """The library's ``Settings`` (py_ocpi/core/config.py) come from the environment at import; set what we own."""
    url = urlsplit(config.base_url)
    os.environ["PROTOCOL"] = url.scheme
    os.environ["OCPI_HOST"] = url.netloc
    os.environ["COUNTRY_CODE"] = config.country_code  # used by its push code to build receiver URLs
    os.environ["PARTY_ID"] = config.party_id
    os.environ.setdefault("ENVIRONMENT", "production")
    # COMMAND_AWAIT_TIME, CI_STRING_LOWERCASE_PREFERENCE, TRAILING_SLASH, OCPI_PREFIX: left to the caller's env.


# -- JSON helpers --------------------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Plain JSON data from what the library hands the CRUD (pydantic v1 models, enums, datetimes)."""
    if hasattr(value, "dict") and callable(value.dict) and not isinstance(value, dict):
        return jsonable(value.dict())
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def token_header(token: str) -> str:
    """The form the library itself sends on 2.2.1 (py_ocpi/core/push.py push_object): ``Token base64(token)``."""
    return "Token " + base64.b64encode(token.encode()).decode()


def ci(value: Any) -> str:
    return str(value).lower() if value is not None else ""


def parse_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- the party's state ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Peer:
    """The platform we registered with (or that registered with us): how we call it."""

    token: str  # the token we send it
    versions_url: str
    details_url: str | None
    endpoints: list[dict[str, Any]]
    roles: list[dict[str, Any]]
    our_token: str  # the token it sends us


@dataclasses.dataclass
class BehaviourConfig:
    """What the CRUD answers where the library asks the application (set through ``/_control/config``)."""

    command_response: dict[str, Any] = dataclasses.field(default_factory=lambda: {"result": "ACCEPTED", "timeout": 30})
    command_result: dict[str, Any] | None = dataclasses.field(default_factory=lambda: {"result": "ACCEPTED"})
    authorize_allowed: str = "ALLOWED"
    authorization_reference: str | None = None
    chargingprofile_response: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"result": "ACCEPTED", "timeout": 30}
    )
    active_chargingprofile_result: dict[str, Any] | None = dataclasses.field(
        default_factory=lambda: {"result": "ACCEPTED"}
    )


class PartyState:
    def __init__(self, config: PartyConfig) -> None:
        self.config = config
        self.token_a: str | None = config.token_a
        self.issued: dict[str, Peer | None] = {}  # token C (or B) we handed out → the peer that uses it
        self.peer: Peer | None = None
        self.objects: dict[str, dict[tuple[str, str, str], dict[str, Any]]] = {m: {} for m in OBJECT_MODULES}
        self.commands_received: list[dict[str, Any]] = []  # CPO: commands the library passed to the CRUD
        self.command_results: dict[str, list[dict[str, Any]]] = {}  # eMSP: results per response_url uid
        self.chargingprofile_requests: list[dict[str, Any]] = []  # CPO: GET/PUT/DELETE the library passed on
        self.chargingprofile_results: list[dict[str, Any]] = []  # eMSP: POSTed results (with their query)
        self.active_chargingprofiles: dict[str, dict[str, Any]] = {}  # eMSP: PUT by session id
        self.charging_preferences: dict[str, dict[str, Any]] = {}  # CPO: PUT /sessions/{id}/charging_preferences
        self.clientinfo: dict[tuple[str, str], dict[str, Any]] = {}
        self.authorizations: list[dict[str, Any]] = []  # eMSP: real-time authorization requests
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.behaviour = BehaviourConfig()

    @property
    def versions_url(self) -> str:
        return f"{self.config.base_url}/ocpi/versions"

    def own_credentials(self, token: str) -> dict[str, Any]:
        role = {
            "role": self.config.role,
            "business_details": {"name": self.config.name},
            "party_id": self.config.party_id,
            "country_code": self.config.country_code,
        }
        return {"token": token, "url": self.versions_url, "roles": [role]}

    def issue_token(self, peer: Peer | None) -> str:
        token = secrets.token_hex(16)
        self.issued[token] = peer
        return token

    def peer_for(self, auth_token: str | None) -> Peer | None:
        if auth_token is not None and self.issued.get(auth_token) is not None:
            return self.issued[auth_token]
        return self.peer

    # -- object store -------------------------------------------------------------------------------------------

    def key_of(self, module: str, obj: dict[str, Any], kwargs: dict[str, Any]) -> tuple[str, str, str]:
        ident = obj.get("uid") if module == "tokens" else obj.get("id")
        return (
            ci(kwargs.get("country_code") or obj.get("country_code")),
            ci(kwargs.get("party_id") or obj.get("party_id")),
            ci(ident),
        )

    def find(self, module: str, ident: Any, kwargs: dict[str, Any]) -> tuple[tuple[str, str, str], dict[str, Any]]:
        """The stored object with this id (CiString: case-insensitive), within country_code/party_id if given."""
        cc, pid = ci(kwargs.get("country_code")), ci(kwargs.get("party_id"))
        token_type = kwargs.get("token_type")
        for key, obj in self.objects[module].items():
            if key[2] != ci(ident) or (cc and key[0] != cc) or (pid and key[1] != pid):
                continue
            if module == "tokens" and token_type is not None and ci(obj.get("type")) != ci(jsonable(token_type)):
                continue
            return key, obj
        raise KeyError(ident)

    def put(self, module: str, obj: dict[str, Any], kwargs: dict[str, Any], ident: Any = None) -> dict[str, Any]:
        stored = jsonable(obj)
        key = self.key_of(module, stored, kwargs)
        if ident is not None:
            key = (key[0], key[1], ci(ident))
        self.objects[module][key] = stored
        return dict(stored)

    def listing(self, module: str, filters: dict[str, Any]) -> tuple[list[dict[str, Any]], int, bool]:
        date_from = parse_datetime(filters.get("date_from"))
        date_to = parse_datetime(filters.get("date_to"))
        selected = []
        for obj in self.objects[module].values():
            updated = parse_datetime(obj.get("last_updated"))
            if date_from is not None and (updated is None or updated < date_from):
                continue
            if date_to is not None and (updated is None or updated >= date_to):
                continue
            selected.append(obj)
        offset, limit = int(filters.get("offset") or 0), int(filters.get("limit") or 0)
        page = selected[offset : offset + limit]
        return page, len(selected), offset + limit >= len(selected)


def lib(name: str) -> ModuleType:
    """A py_ocpi module, imported on first use: only after ``configure_library_environment`` (and only in the party
    venv, so the project's mypy sees ``ModuleType`` rather than a missing import)."""
    return importlib.import_module(name)


# -- the library application ---------------------------------------------------------------------------------------


def build_library_app(state: PartyState) -> Any:
    """The library's own FastAPI application for this role, with our CRUD and authenticator."""
    get_application = lib("py_ocpi").get_application
    Authenticator: Any = lib("py_ocpi.core.authentication.authenticator").Authenticator
    Crud: Any = lib("py_ocpi.core.crud").Crud
    enums = lib("py_ocpi.core.enums")
    Action, ModuleID, RoleEnum = enums.Action, enums.ModuleID, enums.RoleEnum
    VersionNumber = lib("py_ocpi.modules.versions.enums").VersionNumber

    class PartyAuthenticator(Authenticator):  # type: ignore[misc]  # the library's base class, untyped here
        """Token C: every token we issued; token A: the one we hand out until a registration uses it."""

        @classmethod
        async def get_valid_token_c(cls) -> list[str]:
            return list(state.issued)

        @classmethod
        async def get_valid_token_a(cls) -> list[str]:
            return [state.token_a] if state.token_a else []

    class MemoryCrud(Crud):  # type: ignore[misc]  # the library's abstract CRUD interface
        """The library's CRUD over ``PartyState``; each method receives what py_ocpi's routers pass it."""

        async def get(self, module: Any, role: Any, id: Any, *args: Any, **kwargs: Any) -> Any:
            name = ModuleID(module).value
            if name in OBJECT_MODULES:
                try:
                    return state.find(name, id, kwargs)[1]
                except KeyError:
                    return None
            if name == "credentials":
                # GET/DELETE credentials: ours, as seen by the platform holding this token.
                return state.own_credentials(id) if id in state.issued else None
            if name == "commands":
                # Polled by send_command_result (commands/v_2_2_1/api/cpo.py) until truthy, every 2 s.
                return state.behaviour.command_result
            if name == "hubclientinfo":
                if id is None:
                    return state.clientinfo.get((ci(kwargs.get("country_code")), ci(kwargs.get("party_id"))))
                # chargingprofiles/v_2_2_1/background_tasks.py asks hub_client_info (sic) with id 0 for the
                # result of a charging profile request; the loops of SET and DELETE break on a *falsy* answer.
                if "duration" in kwargs:
                    return state.behaviour.active_chargingprofile_result
                return None
            return None

        async def list(self, module: Any, role: Any, filters: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            name = ModuleID(module).value
            if name in OBJECT_MODULES:
                return state.listing(name, filters)
            return [], 0, True

        async def create(self, module: Any, role: Any, data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            name = ModuleID(module).value
            if name in OBJECT_MODULES:
                return state.put(name, data, kwargs)
            if name == "credentials":
                return register_peer(data, kwargs.get("auth_token"))
            if name == "hubclientinfo":
                stored = jsonable(data)
                state.clientinfo[(ci(kwargs.get("country_code")), ci(kwargs.get("party_id")))] = stored
                return stored
            if name == "chargingprofiles":
                query = dict(kwargs.get("query_params") or {})
                state.chargingprofile_results.append({"result": jsonable(data), "query": query})
                return data
            return data

        async def update(self, module: Any, role: Any, data: dict[str, Any], id: Any, *args: Any, **kwargs: Any) -> Any:
            name = ModuleID(module).value
            if name in OBJECT_MODULES:
                if name == "sessions" and RoleEnum(role) == RoleEnum.cpo:
                    # PUT /sessions/{id}/charging_preferences on the CPO (sessions/v_2_2_1/api/cpo.py).
                    state.charging_preferences[ci(id)] = jsonable(data)
                    return data
                return state.put(name, data, kwargs, ident=id)
            if name == "credentials":
                state.issued.pop(str(kwargs.get("auth_token")), None)
                return register_peer(data, None)
            if name == "commands":
                state.command_results.setdefault(str(id), []).append(jsonable(data))
                return data
            if name == "hubclientinfo":
                stored = jsonable(data)
                state.clientinfo[(ci(kwargs.get("country_code")), ci(kwargs.get("party_id")))] = stored
                return stored
            if name == "chargingprofiles":
                state.active_chargingprofiles[str(kwargs.get("session_id"))] = jsonable(data)
                return data
            return data

        async def delete(self, module: Any, role: Any, id: Any, *args: Any, **kwargs: Any) -> Any:
            name = ModuleID(module).value
            if name in OBJECT_MODULES:
                with contextlib.suppress(KeyError):
                    key, _ = state.find(name, id, kwargs)
                    del state.objects[name][key]
            elif name == "credentials":
                peer = state.issued.pop(id, None)
                if peer is not None and peer is state.peer:
                    state.peer = None
            return None

        async def do(self, module: Any, role: Any, action: Any, *args: Any, data: Any = None, **kwargs: Any) -> Any:
            name, act = ModuleID(module).value, Action(action)
            if act == Action.get_client_token:
                peer = state.peer_for(kwargs.get("auth_token"))
                return peer.token if peer is not None else ""
            if act == Action.send_command:
                body = args[0] if args else data
                state.commands_received.append({"command": jsonable(kwargs.get("command")), "body": jsonable(body)})
                return dict(state.behaviour.command_response)
            if act == Action.authorize_token:
                info = jsonable(data)
                state.authorizations.append(info)
                token = state.find("tokens", info["token_uid"], {"token_type": info.get("token_type")})[1]
                return {
                    "allowed": state.behaviour.authorize_allowed,
                    "token": token,
                    "location": info.get("location_reference"),
                    "authorization_reference": state.behaviour.authorization_reference,
                }
            if name == "chargingprofiles":
                body = args[0] if args else data
                state.chargingprofile_requests.append(
                    {
                        "action": act.value,
                        "session_id": jsonable((kwargs.get("session") or {}).get("id")),
                        "duration": kwargs.get("duration"),
                        "response_url": jsonable(kwargs.get("response_url")),
                        "body": jsonable(body),
                    }
                )
                return dict(state.behaviour.chargingprofile_response)
            return None

    def register_peer(data: dict[str, Any], token_a: str | None) -> dict[str, Any]:
        """Server side of credentials POST/PUT: the library fetched the peer's versions and details already."""
        theirs = jsonable(data["credentials"])
        details = jsonable(data.get("endpoints") or {})
        peer = Peer(
            token=theirs["token"],
            versions_url=theirs["url"],
            details_url=None,
            endpoints=list(details.get("endpoints") or []) if isinstance(details, dict) else [],
            roles=list(theirs.get("roles") or []),
            our_token="",
        )
        if token_a is not None and token_a == state.token_a:
            state.token_a = None  # token A is single-use
        peer.our_token = state.issue_token(peer)
        state.peer = peer
        return state.own_credentials(peer.our_token)

    role = RoleEnum.cpo if state.config.role == "CPO" else RoleEnum.emsp
    modules = [
        ModuleID.credentials_and_registration,
        ModuleID.locations,
        ModuleID.sessions,
        ModuleID.cdrs,
        ModuleID.tariffs,
        ModuleID.tokens,
        ModuleID.commands,
        ModuleID.hub_client_info,
        ModuleID.charging_profile,
    ]
    app = get_application(
        version_numbers=[VersionNumber.v_2_2_1],
        roles=[role],
        crud=MemoryCrud(),
        modules=modules,
        authenticator=PartyAuthenticator,
    )
    return app


# -- client side: things the library does not do as a client, with its models ---------------------------------------


async def fetch_details(client: httpx.AsyncClient, versions_url: str, token: str) -> tuple[str, dict[str, Any]]:
    """GET versions, pick 2.2.1, GET its details; returns (details URL, details data)."""
    versions = await client.get(versions_url, headers={"Authorization": token_header(token)})
    if versions.status_code != 200:
        raise RuntimeError(f"GET {versions_url} answered {versions.status_code}: {versions.text[:500]}")
    entries = versions.json().get("data") or []
    details_url = next((v["url"] for v in entries if isinstance(v, dict) and v.get("version") == VERSION), None)
    if details_url is None:
        raise RuntimeError(f"{versions_url} offers no {VERSION}: {entries!r}")
    details = await client.get(details_url, headers={"Authorization": token_header(token)})
    if details.status_code != 200:
        raise RuntimeError(f"GET {details_url} answered {details.status_code}: {details.text[:500]}")
    data = details.json().get("data")
    if not isinstance(data, dict):
        raise RuntimeError(f"{details_url} has no details object: {details.text[:500]}")
    return details_url, data


async def register_with(state: PartyState, versions_url: str, token_a: str) -> dict[str, Any]:
    """Party-initiated registration (credentials §7.1): the library has no client for it, so this uses its
    ``Credentials`` model for the body and httpx (the library's own HTTP client) for the calls."""
    Credentials = lib("py_ocpi.modules.credentials.v_2_2_1.schemas").Credentials

    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
        details_url, details = await fetch_details(client, versions_url, token_a)
        endpoints = [e for e in details.get("endpoints") or [] if isinstance(e, dict)]
        credentials_url = next((e["url"] for e in endpoints if e.get("identifier") == "credentials"), None)
        if credentials_url is None:
            raise RuntimeError(f"{details_url} publishes no credentials endpoint")
        token_b = state.issue_token(None)
        body = jsonable(Credentials(**state.own_credentials(token_b)).dict())
        answer = await client.post(credentials_url, json=body, headers={"Authorization": token_header(token_a)})
        try:
            envelope = answer.json()
        except ValueError:
            envelope = None
        theirs = envelope.get("data") if isinstance(envelope, dict) else None
        if answer.status_code != 200 or not isinstance(theirs, dict) or "token" not in theirs:
            state.issued.pop(token_b, None)
            return {
                "ok": False,
                "status": answer.status_code,
                "body": answer.text,
                "credentials_url": credentials_url,
                "sent": body,
            }
        peer = Peer(
            token=str(theirs["token"]),
            versions_url=str(theirs.get("url") or versions_url),
            details_url=details_url,
            endpoints=endpoints,
            roles=list(theirs.get("roles") or []),
            our_token=token_b,
        )
        state.issued[token_b] = peer
        state.peer = peer
        return {
            "ok": True,
            "status": answer.status_code,
            "body": answer.text,
            "credentials_url": credentials_url,
            "sent": body,
            "token_b": token_b,
            "peer_token": peer.token,
            "details_url": details_url,
        }


async def peer_details_url(state: PartyState, peer: Peer) -> str:
    if peer.details_url is None:
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
            peer.details_url, details = await fetch_details(client, peer.versions_url, peer.token)
            peer.endpoints = [e for e in details.get("endpoints") or [] if isinstance(e, dict)]
    return peer.details_url


def model_body(model: str, body: Any, partial: bool) -> Any:
    """``module.Class`` from py_ocpi.modules.<module>.v_2_2_1.schemas; its ``.dict()`` as the library sends it."""
    get_module_model = lib("py_ocpi.core.utils").get_module_model

    module, _, class_name = model.partition(".")
    instance = get_module_model(class_name, module, "v_2_2_1")(**body)
    return jsonable(instance.dict(exclude_unset=True) if partial else instance.dict())


#: Headers a test adds to the library's own push request (``/_control/push`` with ``headers``): the library sends
#: no routing headers, so a push "with headers" is its request with these added, everything else its own.
PUSH_HEADERS: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("push_headers", default=None)


def record_outgoing() -> None:
    """Log every request the party sends (the library's own and ours) with its answer; nothing is changed, except
    the headers a test asked to add to a push (``PUSH_HEADERS``, on its PUT/POST only, not on the details GET)."""
    original = httpx.AsyncClient.send

    async def send(self: httpx.AsyncClient, request: httpx.Request, *args: Any, **kwargs: Any) -> httpx.Response:
        extra = PUSH_HEADERS.get()
        if extra and request.method in ("PUT", "POST"):
            request.headers.update(extra)
        entry: dict[str, Any] = {
            "method": request.method,
            "url": str(request.url),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
            "body": request.content.decode("utf-8", "replace"),
            "at": time.time(),
        }
        SENT_LOG.append(entry)
        try:
            response = await original(self, request, *args, **kwargs)
        except httpx.HTTPError as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
            raise
        await response.aread()
        entry["status"] = response.status_code
        entry["response_headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in response.headers.raw]
        entry["response_body"] = response.text
        return response

    setattr(httpx.AsyncClient, "send", send)  # noqa: B010  # an observer around the library's one HTTP client


SENT_LOG: list[dict[str, Any]] = []


# -- the request log (pure ASGI, around the library app) -------------------------------------------------------------


def recording(app: ASGIApp, state: PartyState) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        entry: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": scope.get("raw_path", b"").decode("latin-1"),
            "query": scope.get("query_string", b"").decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "at": time.time(),
        }
        body = bytearray()
        response_body = bytearray()
        status: list[int] = []

        async def receive_recorded() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    entry["body"] = body.decode("utf-8", "replace")
            return message

        async def send_recorded(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                entry["response_headers"] = [
                    [k.decode("latin-1"), v.decode("latin-1")] for k, v in message.get("headers", [])
                ]
            elif message["type"] == "http.response.body":
                response_body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    # Answered: the entry is whole from here on (``status`` is what tests wait for), although the
                    # library may still run background tasks (a command result) inside this same call.
                    entry["body"] = body.decode("utf-8", "replace")
                    entry["response_body"] = response_body.decode("utf-8", "replace")
                    entry["status"] = status[0] if status else None
            await send(message)

        state.received.append(entry)
        try:
            await app(scope, receive_recorded, send_recorded)
        finally:
            entry["body"] = body.decode("utf-8", "replace")
            entry["response_body"] = response_body.decode("utf-8", "replace")
            entry.setdefault("status", status[0] if status else None)

    return middleware


# -- the control API -----------------------------------------------------------------------------------------------


def control_app(state: PartyState) -> Starlette:
    def ok(data: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(jsonable(data), status_code=status)

    async def body_of(request: Request) -> dict[str, Any]:
        raw = await request.body()
        data = json.loads(raw) if raw else {}
        if not isinstance(data, dict):
            raise ValueError("the control body must be a JSON object")
        return data

    def info() -> dict[str, Any]:
        peer = state.peer
        return {
            "role": state.config.role,
            "country_code": state.config.country_code,
            "party_id": state.config.party_id,
            "name": state.config.name,
            "base_url": state.config.base_url,
            "versions_url": state.versions_url,
            "token_a": state.token_a,
            "issued_tokens": list(state.issued),
            "peer": dataclasses.asdict(peer) if peer is not None else None,
            "pid": os.getpid(),
        }

    async def health(request: Request) -> Response:
        return ok(info())

    async def set_token_a(request: Request) -> Response:
        data = await body_of(request)
        state.token_a = str(data["token_a"]) if data.get("token_a") else None
        return ok(info())

    async def configure(request: Request) -> Response:
        data = await body_of(request)
        fields = {f.name for f in dataclasses.fields(BehaviourConfig)}
        unknown = sorted(set(data) - fields)
        if unknown:
            return ok({"error": f"unknown settings: {unknown}"}, 400)
        for name, value in data.items():
            setattr(state.behaviour, name, value)
        return ok(dataclasses.asdict(state.behaviour))

    async def seed(request: Request) -> Response:
        data = await body_of(request)
        module = str(data["module"])
        if module not in OBJECT_MODULES:
            return ok({"error": f"unknown module {module!r}"}, 400)
        keys = []
        for obj in data.get("objects") or []:
            model_body(f"{module}.{OBJECT_MODELS[module]}", obj, partial=False)  # reject what the library would
            stored = state.put(module, obj, {})
            keys.append(list(state.key_of(module, stored, {})))
        return ok({"stored": keys})

    async def store(request: Request) -> Response:
        module = request.path_params["module"]
        views: dict[str, Any] = {
            "commands_received": state.commands_received,
            "command_results": state.command_results,
            "chargingprofile_requests": state.chargingprofile_requests,
            "chargingprofile_results": state.chargingprofile_results,
            "active_chargingprofiles": state.active_chargingprofiles,
            "charging_preferences": state.charging_preferences,
            "authorizations": state.authorizations,
            "clientinfo": list(state.clientinfo.values()),
        }
        if module in OBJECT_MODULES:
            return ok(list(state.objects[module].values()))
        if module in views:
            return ok(views[module])
        return ok({"error": f"unknown store {module!r}"}, 404)

    async def received(request: Request) -> Response:
        since = int(request.query_params.get("since", "0"))
        return ok(state.received[since:])

    async def sent(request: Request) -> Response:
        since = int(request.query_params.get("since", "0"))
        return ok(SENT_LOG[since:])

    async def register(request: Request) -> Response:
        data = await body_of(request)
        try:
            result = await register_with(state, str(data["versions_url"]), str(data["token_a"]))
        except (httpx.HTTPError, RuntimeError, ValueError, KeyError) as exc:
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return ok(result)

    async def push(request: Request) -> Response:
        """The library's own push (py_ocpi/core/push.py push_object), as its /push/{version} endpoint runs it."""
        BaseAdapter = lib("py_ocpi.core.adapter").BaseAdapter
        push_object = lib("py_ocpi.core.push").push_object
        Push = lib("py_ocpi.core.schemas").Push
        VersionNumber = lib("py_ocpi.modules.versions.enums").VersionNumber

        data = await body_of(request)
        peer = state.peer
        endpoints_url = data.get("endpoints_url")
        token = data.get("token")
        if endpoints_url is None or token is None:
            if peer is None:
                return ok({"error": "not registered and no endpoints_url/token given"}, 409)
            endpoints_url = endpoints_url or await peer_details_url(state, peer)
            token = token or peer.token
        message = Push(
            module_id=data["module"],
            object_id=data["object_id"],
            receivers=[{"endpoints_url": endpoints_url, "auth_token": token}],
        )
        since = len(SENT_LOG)
        crud = library_crud(request)
        extra = data.get("headers")
        added = PUSH_HEADERS.set({str(k): str(v) for k, v in extra.items()} if isinstance(extra, dict) else None)
        try:
            result = await push_object(VersionNumber.v_2_2_1, message, crud, BaseAdapter)
        except Exception as exc:  # whatever the library raised is the finding: report it to the test
            return ok({"ok": False, "error": f"{type(exc).__name__}: {exc}", "sent": SENT_LOG[since:]})
        finally:
            PUSH_HEADERS.reset(added)
        return ok({"ok": True, "result": jsonable(result.dict()), "sent": SENT_LOG[since:]})

    async def send_request(request: Request) -> Response:
        """A request the library has no client for, with its models' serialisation and its token form."""
        data = await body_of(request)
        peer = state.peer
        token = data.get("token") or (peer.token if peer is not None else None)
        url = data.get("url")
        if url is None:
            if peer is None:
                return ok({"error": "not registered and no url given"}, 409)
            await peer_details_url(state, peer)
            endpoint = next(
                (
                    e["url"]
                    for e in peer.endpoints
                    if e.get("identifier") == data.get("module") and e.get("role") == data.get("interface")
                ),
                None,
            )
            if endpoint is None:
                return ok({"error": f"the peer publishes no {data.get('module')} {data.get('interface')}"}, 409)
            path = str(data.get("path") or "")
            url = endpoint if not path else endpoint.rstrip("/") + "/" + path.lstrip("/")
        headers = {str(k): str(v) for k, v in (data.get("headers") or {}).items()}
        if token is not None and "authorization" not in {k.lower() for k in headers}:
            headers["Authorization"] = token_header(str(token))
        body = data.get("json")
        if body is not None and data.get("model"):
            body = model_body(str(data["model"]), body, partial=bool(data.get("partial")))
        stored = data.get("stored")
        if isinstance(stored, dict):
            # A stored object exactly as the library's push serialises it (py_ocpi/core/push.py request_data).
            module_id = lib("py_ocpi.core.enums").ModuleID(stored["module"])
            obj = state.find(module_id.value, stored["id"], {})[1]
            body = jsonable(
                lib("py_ocpi.core.push").request_data(
                    module_id,
                    obj,
                    lib("py_ocpi.core.adapter").BaseAdapter,
                    lib("py_ocpi.modules.versions.enums").VersionNumber.v_2_2_1,
                )
            )
        content = json.dumps(body).encode() if body is not None else None
        if content is not None:
            headers.setdefault("Content-Type", "application/json")
        params = data.get("params")
        async with httpx.AsyncClient(timeout=float(data.get("timeout") or HTTP_TIMEOUT)) as client:
            try:
                answer = await client.request(
                    str(data.get("method") or "GET"), str(url), headers=headers, content=content, params=params
                )
            except httpx.HTTPError as exc:
                return ok({"ok": False, "error": f"{type(exc).__name__}: {exc}", "url": str(url)})
        return ok(
            {
                "ok": True,
                "url": str(answer.request.url),
                "status": answer.status_code,
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in answer.headers.raw],
                "body": answer.text,
                "sent_body": body,
            }
        )

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except (ValueError, KeyError, TypeError) as exc:  # a test's bad control request, incl. model errors
                return ok({"error": f"{type(exc).__name__}: {exc}"}, 400)

        return endpoint

    routes = [
        Route("/health", guarded(health), methods=["GET"]),
        Route("/token_a", guarded(set_token_a), methods=["POST"]),
        Route("/config", guarded(configure), methods=["POST"]),
        Route("/seed", guarded(seed), methods=["POST"]),
        Route("/store/{module}", guarded(store), methods=["GET"]),
        Route("/received", guarded(received), methods=["GET"]),
        Route("/sent", guarded(sent), methods=["GET"]),
        Route("/register", guarded(register), methods=["POST"]),
        Route("/push", guarded(push), methods=["POST"]),
        Route("/send", guarded(send_request), methods=["POST"]),
    ]
    return Starlette(routes=routes)


def library_crud(request: Request) -> Any:
    return request.app.state.crud


def dispatcher(library: ASGIApp, control: Starlette) -> ASGIApp:
    """``/_control/...`` to the control API, everything else (recorded) to the library's application."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/")):
            scope = dict(scope)
            scope["root_path"] = scope.get("root_path", "") + CONTROL_PREFIX
            scope["path"] = path[len(CONTROL_PREFIX) :] or "/"
            await control(scope, receive, send)
            return
        await library(scope, receive, send)

    return app


def main(argv: list[str]) -> None:
    config = parse_args(argv)
    configure_library_environment(config)
    state = PartyState(config)
    record_outgoing()
    library = build_library_app(state)
    control = control_app(state)
    # The control API's push hands the library the same CRUD its routers use (get_application's override).
    get_crud = lib("py_ocpi.core.dependencies").get_crud
    control.state.crud = library.dependency_overrides[get_crud]()
    app = dispatcher(recording(library, state), control)
    sock = socket.socket(fileno=config.fd)
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    )
    print(f"party {config.role} {config.country_code}*{config.party_id} on {config.base_url}", flush=True)
    asyncio.run(server.serve(sockets=[sock]))


if __name__ == "__main__":
    main(sys.argv[1:])
