"""Real extrawest-ocpi parties for tests: ``party_app.py`` as a subprocess of the party venv, and a typed client for
its control API.

Owns: starting a party on a loopback socket the test bound (handed over as an inherited file descriptor, so there is
no port race), waiting for it by polling, stopping it by its PID (SIGTERM, then SIGKILL), and the records the
control API answers with.

Must not: import the library (it lives in another venv), sleep to wait for anything, or leave a process behind.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import httpx
import orjson

from tests.support.processes import poll, stop_process
from tests.support.servers import bound_socket

Role = Literal["CPO", "EMSP"]
Headers = tuple[tuple[str, str], ...]

PARTY_APP: Final = Path(__file__).with_name("party_app.py")
OCPI_PREFIX: Final = "/ocpi"
VERSION: Final = "2.2.1"
#: Environment variables the party inherits; everything else (proxies, py_ocpi settings such as ENVIRONMENT or
#: NO_AUTH, PYTHONPATH) stays out so the library sees only what a test sets.
INHERITED_ENV: Final = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")


def token_header(token: str) -> str:
    """``Token base64(token)``: the only form the library accepts on its 2.2.1 module endpoints."""
    return "Token " + base64.b64encode(token.encode()).decode()


def _headers(raw: Any) -> Headers:
    return tuple((str(k), str(v)) for k, v in (raw or []))


def _header(headers: Headers, name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers if k.lower() == wanted), None)


def _json(text: str) -> Any:
    return orjson.loads(text) if text else None


# -- records of the control API ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One OCPI request the party's server got, with what the library answered."""

    method: str
    path: str
    query: str
    headers: Headers
    body: str
    status: int | None
    response_headers: Headers
    response_body: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReceivedRequest:
        return cls(
            method=str(data["method"]),
            path=str(data["path"]),
            query=str(data.get("query") or ""),
            headers=_headers(data.get("headers")),
            body=str(data.get("body") or ""),
            status=int(data["status"]) if data.get("status") is not None else None,
            response_headers=_headers(data.get("response_headers")),
            response_body=str(data.get("response_body") or ""),
        )

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)

    def response_header(self, name: str) -> str | None:
        return _header(self.response_headers, name)

    @property
    def json(self) -> Any:
        return _json(self.body)

    @property
    def response_json(self) -> Any:
        return _json(self.response_body)


@dataclass(frozen=True, slots=True)
class SentRequest:
    """One request the party made (the library's own, or one the control API asked for), with the answer."""

    method: str
    url: str
    headers: Headers
    body: str
    status: int | None
    response_headers: Headers
    response_body: str
    error: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SentRequest:
        return cls(
            method=str(data["method"]),
            url=str(data["url"]),
            headers=_headers(data.get("headers")),
            body=str(data.get("body") or ""),
            status=int(data["status"]) if data.get("status") is not None else None,
            response_headers=_headers(data.get("response_headers")),
            response_body=str(data.get("response_body") or ""),
            error=str(data["error"]) if data.get("error") else None,
        )

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)

    def response_header(self, name: str) -> str | None:
        return _header(self.response_headers, name)

    @property
    def json(self) -> Any:
        return _json(self.body)

    @property
    def response_json(self) -> Any:
        return _json(self.response_body)


@dataclass(frozen=True, slots=True)
class PartyInfo:
    role: Role
    country_code: str
    party_id: str
    versions_url: str
    token_a: str | None
    issued_tokens: tuple[str, ...]
    peer_token: str | None
    peer_versions_url: str | None
    pid: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PartyInfo:
        peer = data.get("peer") or {}
        role: Role = "CPO" if data["role"] == "CPO" else "EMSP"
        return cls(
            role=role,
            country_code=str(data["country_code"]),
            party_id=str(data["party_id"]),
            versions_url=str(data["versions_url"]),
            token_a=str(data["token_a"]) if data.get("token_a") else None,
            issued_tokens=tuple(str(t) for t in data.get("issued_tokens") or ()),
            peer_token=str(peer["token"]) if peer.get("token") else None,
            peer_versions_url=str(peer["versions_url"]) if peer.get("versions_url") else None,
            pid=int(data["pid"]),
        )


@dataclass(frozen=True, slots=True)
class Registration:
    """What a party-initiated registration (``POST /_control/register``) did."""

    ok: bool
    status: int | None
    body: str
    credentials_url: str | None
    token_b: str | None  # what the party gave the other side to call it
    peer_token: str | None  # what the other side gave the party (token C)
    details_url: str | None
    sent: Any
    error: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Registration:
        return cls(
            ok=bool(data.get("ok")),
            status=int(data["status"]) if data.get("status") is not None else None,
            body=str(data.get("body") or ""),
            credentials_url=data.get("credentials_url"),
            token_b=data.get("token_b"),
            peer_token=data.get("peer_token"),
            details_url=data.get("details_url"),
            sent=data.get("sent"),
            error=data.get("error"),
        )


@dataclass(frozen=True, slots=True)
class PushOutcome:
    """The library's ``push_object`` result (its PushResponse) and the requests it made."""

    ok: bool
    result: Any
    error: str | None
    sent: tuple[SentRequest, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PushOutcome:
        return cls(
            ok=bool(data.get("ok")),
            result=data.get("result"),
            error=data.get("error"),
            sent=tuple(SentRequest.from_json(s) for s in data.get("sent") or ()),
        )


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """The answer to a request the party made through ``POST /_control/send``."""

    ok: bool
    url: str | None
    status: int | None
    headers: Headers
    body: str
    sent_body: Any
    error: str | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SendOutcome:
        return cls(
            ok=bool(data.get("ok")),
            url=data.get("url"),
            status=int(data["status"]) if data.get("status") is not None else None,
            headers=_headers(data.get("headers")),
            body=str(data.get("body") or ""),
            sent_body=data.get("sent_body"),
            error=data.get("error"),
        )

    def header(self, name: str) -> str | None:
        return _header(self.headers, name)

    @property
    def json(self) -> Any:
        return _json(self.body)


# -- soft checks ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One interop check: what was checked, in which test, whether it held and, if not, what was seen."""

    test: str
    name: str
    ok: bool
    detail: str


class Checks:
    """The interop checks of one test. Each is recorded (the run ends with "interop checks: N of M hold") and the
    test goes on, so one defect does not hide the checks after it; ``verify`` at the end fails the test with every
    check that did not hold."""

    def __init__(self, test: str, sink: list[CheckResult]) -> None:
        self.test = test
        self.results: list[CheckResult] = []
        self.verified = False
        self._sink = sink

    def that(self, name: str, ok: bool, detail: str = "") -> bool:
        result = CheckResult(self.test, name, ok, "" if ok else detail)
        self.results.append(result)
        self._sink.append(result)
        return ok

    def equal(self, name: str, got: object, expected: object) -> bool:
        return self.that(name, got == expected, f"expected {expected!r}, got {got!r}")

    def verify(self) -> None:
        self.verified = True
        failed = [r for r in self.results if not r.ok]
        if failed:
            listed = "\n".join(f"  - {r.name}: {r.detail}" for r in failed)
            raise AssertionError(f"{len(failed)} of {len(self.results)} interop checks did not hold:\n{listed}")


class ControlError(AssertionError):
    """The control API refused a request (a test's mistake, e.g. an object the library's model rejects)."""


# -- the control client --------------------------------------------------------------------------------------------


class PartyControl:
    """Typed client for one party's ``/_control`` API."""

    def __init__(self, base_url: str, client: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/") + "/_control"
        self._client = client

    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        content = orjson.dumps(body) if body is not None else None
        reply = await self._client.request(
            method, self.base_url + path, content=content, headers={"Content-Type": "application/json"}
        )
        data = reply.json()
        if reply.status_code != 200:
            raise ControlError(f"{method} {path} → {reply.status_code}: {data}")
        return data

    async def info(self) -> PartyInfo:
        return PartyInfo.from_json(await self._call("GET", "/health"))

    async def seed(self, module: str, *objects: Mapping[str, Any]) -> None:
        """Store objects (validated by the library's own model) as if the party's back office had them."""
        await self._call("POST", "/seed", {"module": module, "objects": list(objects)})

    async def store(self, name: str) -> Any:
        """A module's objects (``locations`` …) or a log the CRUD kept (``commands_received``, ``command_results``,
        ``chargingprofile_requests``, ``chargingprofile_results``, ``active_chargingprofiles``,
        ``charging_preferences``, ``authorizations``, ``clientinfo``)."""
        return await self._call("GET", f"/store/{name}")

    async def received(self, since: int = 0) -> list[ReceivedRequest]:
        return [ReceivedRequest.from_json(r) for r in await self._call("GET", f"/received?since={since}")]

    async def sent(self, since: int = 0) -> list[SentRequest]:
        return [SentRequest.from_json(r) for r in await self._call("GET", f"/sent?since={since}")]

    async def mark(self) -> int:
        """How many requests the party has received so far: ``since`` for a later ``wait_received``."""
        return len(await self.received())

    async def wait_received(
        self,
        match: Callable[[ReceivedRequest], bool],
        timeout: float = 10.0,
        what: str = "a request",
        since: int = 0,
    ) -> ReceivedRequest:
        """Poll the request log (from entry ``since`` on) until one answered entry matches (bounded)."""
        found: list[ReceivedRequest] = []

        async def check() -> bool:
            found[:] = [r for r in await self.received(since) if r.status is not None and match(r)]
            return bool(found)

        await poll(check, timeout, f"the party to receive {what}", interval=0.05)
        return found[0]

    async def sent_mark(self) -> int:
        """How many requests the party has sent so far: ``since`` for a later ``wait_sent``."""
        return len(await self.sent())

    async def wait_sent(
        self,
        match: Callable[[SentRequest], bool],
        timeout: float = 10.0,
        what: str = "a request",
        since: int = 0,
    ) -> SentRequest:
        """Poll the outgoing log (from entry ``since`` on) until one finished entry matches (bounded)."""
        found: list[SentRequest] = []

        async def check() -> bool:
            found[:] = [s for s in await self.sent(since) if (s.status is not None or s.error) and match(s)]
            return bool(found)

        await poll(check, timeout, f"the party to send {what}", interval=0.05)
        return found[0]

    async def set_token_a(self, token_a: str | None) -> None:
        """The token A the party accepts for a hub-initiated registration (single use); None: accept none."""
        await self._call("POST", "/token_a", {"token_a": token_a})

    async def configure(self, **settings: Any) -> None:
        """What the CRUD answers: command_response, command_result (None: the library waits for one, up to 5 min),
        authorize_allowed, authorization_reference, chargingprofile_response, active_chargingprofile_result."""
        await self._call("POST", "/config", settings)

    async def register(self, versions_url: str, token_a: str) -> Registration:
        """Party-initiated registration: GET versions and details with token A, POST our credentials."""
        return Registration.from_json(
            await self._call("POST", "/register", {"versions_url": versions_url, "token_a": token_a})
        )

    async def push(
        self,
        module: str,
        object_id: str,
        *,
        endpoints_url: str | None = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> PushOutcome:
        """The library's own push of a stored object (PUT, or POST for cdrs) to the peer it registered with, or to
        ``endpoints_url`` (a version *details* URL, as the library expects) with ``token``. ``headers`` are added to
        the push request itself (the library sends no routing headers of its own)."""
        body: dict[str, Any] = {"module": module, "object_id": object_id}
        if endpoints_url is not None:
            body["endpoints_url"] = endpoints_url
        if token is not None:
            body["token"] = token
        if headers is not None:
            body["headers"] = dict(headers)
        return PushOutcome.from_json(await self._call("POST", "/push", body))

    async def send(
        self,
        method: str,
        *,
        url: str | None = None,
        module: str | None = None,
        interface: Literal["SENDER", "RECEIVER"] | None = None,
        path: str = "",
        json: Any = None,
        model: str | None = None,
        partial: bool = False,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
        stored: tuple[str, str] | None = None,
    ) -> SendOutcome:
        """A request the library has no client for, made by the party: to ``url``, or to the peer's published
        ``module``/``interface`` endpoint joined with ``path`` by exactly one ``/``. ``model`` (``"locations.EVSE"``)
        runs the body through the library's schema first (``partial``: only the fields given); ``stored``
        (``("locations", "LOC1")``) sends a stored object as the library's push serialises it. The token is the
        peer's (``Token base64``) unless ``token`` or an Authorization header is given; no other header is added."""
        body: dict[str, Any] = {"method": method, "path": path}
        for key, value in (
            ("url", url),
            ("module", module),
            ("interface", interface),
            ("json", json),
            ("model", model),
            ("headers", dict(headers) if headers is not None else None),
            ("token", token),
            ("params", dict(params) if params is not None else None),
            ("timeout", timeout),
        ):
            if value is not None:
                body[key] = value
        if partial:
            body["partial"] = True
        if stored is not None:
            body["stored"] = {"module": stored[0], "id": stored[1]}
        return SendOutcome.from_json(await self._call("POST", "/send", body))

    # -- requests the library has no client for, in the shapes OCPI 2.2.1 gives them -----------------------------

    async def patch_evse(
        self,
        location: tuple[str, str, str],
        evse_uid: str,
        fields: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        url: str | None = None,
    ) -> SendOutcome:
        """CPO → peer's locations RECEIVER: ``PATCH {cc}/{pid}/{location_id}/{evse_uid}`` (EVSEPartialUpdate)."""
        path = "/".join((*location, evse_uid))
        return await self.send(
            "PATCH",
            url=None if url is None else url.rstrip("/") + "/" + path,
            module="locations",
            interface="RECEIVER",
            path=path,
            json=dict(fields),
            model="locations.EVSEPartialUpdate",
            partial=True,
            headers=headers,
        )

    async def command(
        self,
        command: str,
        body: Mapping[str, Any],
        *,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> SendOutcome:
        """eMSP → CPO: ``POST {commands endpoint}/{command}`` (START_SESSION …), body checked by the library's model.
        The library's CPO does not publish its commands endpoint, so without a peer that does, pass ``url``."""
        models = {
            "START_SESSION": "commands.StartSession",
            "STOP_SESSION": "commands.StopSession",
            "RESERVE_NOW": "commands.ReserveNow",
            "CANCEL_RESERVATION": "commands.CancelReservation",
            "UNLOCK_CONNECTOR": "commands.UnlockConnector",
        }
        return await self.send(
            "POST",
            url=None if url is None else url.rstrip("/") + "/" + command,
            module="commands",
            interface="RECEIVER",
            path=command,
            json=dict(body),
            model=models.get(command),
            headers=headers,
        )

    async def authorize(
        self,
        token_uid: str,
        *,
        location: Mapping[str, Any] | None = None,
        token_type: str | None = None,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> SendOutcome:
        """CPO → eMSP real-time authorization: ``POST {tokens SENDER}/{uid}/authorize[?type=]`` with an optional
        LocationReferences body."""
        path = f"{token_uid}/authorize"
        return await self.send(
            "POST",
            url=None if url is None else url.rstrip("/") + "/" + path,
            module="tokens",
            interface="SENDER",
            path=path,
            json=dict(location) if location is not None else None,
            model="tokens.LocationReference" if location is not None else None,
            params={"type": token_type} if token_type is not None else None,
            headers=headers,
        )


# -- one running party ---------------------------------------------------------------------------------------------


@dataclass
class LibraryParty:
    """One extrawest-ocpi party process on 127.0.0.1."""

    role: Role
    country_code: str
    party_id: str
    process: asyncio.subprocess.Process
    port: int
    log: Path
    control: PartyControl
    token_a: str  # the token A it was started with (what ``set_token_a`` changes is in ``control.info()``)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def versions_url(self) -> str:
        return f"{self.base_url}{OCPI_PREFIX}/versions"

    @property
    def details_url(self) -> str:
        return f"{self.base_url}{OCPI_PREFIX}/{VERSION}/details"

    def module_url(self, module: str) -> str:
        """The URL the library publishes for a module of this role (with its trailing slash)."""
        return self.base_url + self.module_path(module)

    def module_path(self, module: str) -> str:
        """The path of ``module_url``: what the party's request log shows for requests to that module."""
        segment = "clientinfo" if module == "hubclientinfo" else module
        return f"{OCPI_PREFIX}/{self.role.lower()}/{VERSION}/{segment}/"

    def routing_headers(self, to: tuple[str, str], **extra: str) -> dict[str, str]:
        """OCPI 2.2.1 routing headers from this party to ``to`` (the library itself never sends any)."""
        headers = {
            "OCPI-from-country-code": self.country_code,
            "OCPI-from-party-id": self.party_id,
            "OCPI-to-country-code": to[0],
            "OCPI-to-party-id": to[1],
            "X-Request-ID": secrets.token_hex(8),
            "X-Correlation-ID": secrets.token_hex(8),
        }
        headers.update(extra)
        return headers

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def party_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


@asynccontextmanager
async def running_party(
    python: Path,
    role: Role,
    country_code: str,
    party_id: str,
    *,
    name: str | None = None,
    token_a: str | None = None,
    env: Mapping[str, str] | None = None,
    workdir: Path | None = None,
    ready_timeout: float = 30.0,
) -> AsyncIterator[LibraryParty]:
    """Start a party (``env`` may set library settings, e.g. ``CI_STRING_LOWERCASE_PREFERENCE``), wait until its
    control API answers, yield it, and always stop it by its PID."""
    own_dir = workdir is None
    directory = Path(tempfile.mkdtemp(prefix=f"interop-{role.lower()}-")) if workdir is None else workdir
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / f"party-{role.lower()}-{country_code}-{party_id}.log"
    token = token_a or secrets.token_hex(16)
    sock = bound_socket()
    try:
        sock.listen(128)
        port: int = sock.getsockname()[1]
        args = [
            str(PARTY_APP),
            "--role",
            role,
            "--country-code",
            country_code,
            "--party-id",
            party_id,
            "--fd",
            str(sock.fileno()),
            "--base-url",
            f"http://127.0.0.1:{port}",
            "--token-a",
            token,
        ]
        if name:
            args += ["--name", name]
        with log.open("wb") as sink:
            # cwd: the library's settings also read a ``.env`` file from the working directory.
            process = await asyncio.create_subprocess_exec(
                str(python),
                *args,
                env=party_environment(env),
                cwd=directory,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=sink,
                stderr=asyncio.subprocess.STDOUT,
                pass_fds=(sock.fileno(),),
            )
    finally:
        sock.close()  # the child has its own copy
    try:
        async with httpx.AsyncClient(timeout=15.0, trust_env=False) as client:
            party = LibraryParty(
                role=role,
                country_code=country_code,
                party_id=party_id,
                process=process,
                port=port,
                log=log,
                control=PartyControl(f"http://127.0.0.1:{port}", client),
                token_a=token,
            )
            await wait_ready(party, client, ready_timeout)
            yield party
    finally:
        await stop_process(process, timeout=5.0)
        if own_dir:
            shutil.rmtree(directory, ignore_errors=True)


async def wait_ready(party: LibraryParty, client: httpx.AsyncClient, timeout: float) -> None:
    """Poll ``GET /_control/health`` until 200; fail early, with the log, if the process exits."""

    async def ready() -> bool:
        if party.process.returncode is not None:
            raise AssertionError(f"party {party.role} exited with {party.process.returncode}:\n{party.log_tail()}")
        try:
            reply = await client.get(party.control.base_url + "/health", timeout=1.0)
        except httpx.TransportError:
            return False
        return reply.status_code == 200

    try:
        await poll(ready, timeout, f"the {party.role} party on port {party.port}", interval=0.05)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{party.log_tail()}") from None


class PartyFactory(Protocol):
    """Start a library party of a fixed role: ``async with library_cpo("NL", "CPO") as cpo: ...``."""

    def __call__(
        self,
        country_code: str = ...,
        party_id: str = ...,
        *,
        name: str | None = None,
        token_a: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> AbstractAsyncContextManager[LibraryParty]: ...
