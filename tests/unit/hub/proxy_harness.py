"""A unit-test harness for hub/proxy.py: the real proxy on a real routing snapshot, over ``httpx.ASGITransport``.

Real: ``hub.proxy.Proxy`` and the app's own dispatch (``hub.app.HubApp`` without its lifespan), a ``RoutingTable``
built from registry records the way a reload builds it (``registry.snapshot.build_batch``), ``hub.relay.Relays``
reading that table, ``HubMetrics`` on a fresh ``CollectorRegistry``, ``Tasks``, ``OwnerLearner``.
Doubles, because they would need I/O: the outbound HTTP client (``ScriptedOutbound``: the one method the proxy
calls, ``open``, answered by a script and recorded), the owner index's lookup (``KnownOwners``: a dict), and the
ASGI server's side (``ServerSide``: the ``ocpihub.abort`` extension and a record of what was sent). The Redis
client everything is handed points at a unix socket that does not exist: nothing here may reach it, and anything
that tries fails loudly. No sockets are opened.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, cast

import httpx
import orjson
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config.settings import Settings
from hub.app import build_app
from hub.holdings import Holdings, OwnerLearner
from hub.http.client import HUB_SENDER, Outbound
from hub.metrics import HubMetrics
from hub.proxy import Proxy
from hub.relay import Relays
from hub.runtime import Runtime
from hub.tasks import Tasks
from registry.codec import EndpointRecord, PlatformRecord, RateLimit, encode_platform
from registry.keys import RegistryKeys
from registry.objects import ObjectStore
from registry.owners import OwnerIndex
from registry.snapshot import SnapshotHolder, build_batch
from registry.store import PartyStore
from routing.datetimes import format_datetime
from routing.errors import OcpiError
from routing.model import ConnectionStatus, PartyKey, PartyRole, TokenForm
from routing.owners import OwnerKind, index_field
from routing.table import RoutingTable, SigningKeys

HUB: Final = PartyKey("ZZ", "HUB")
HUB_URL: Final = "https://hub.example.com"
#: The relay signing key of the snapshot (the registry keeps these; any replica verifies with them).
SIGNING: Final = SigningKeys(1, {1: hashlib.sha256(b"unit-test relay key").digest()})
MODULES: Final = ("cdrs", "chargingprofiles", "commands", "locations", "sessions", "tariffs", "tokens")
#: Where nothing listens: the Redis client every registry object gets, never connected.
NO_REDIS: Final = "unix:///nonexistent/ocpi-hub-unit-tests-have-no-redis.sock"
OK_ENVELOPE: Final = b'{"status_code":1000,"timestamp":"2026-01-01T00:00:00Z"}'


# -- the registry the snapshot is built from --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Party:
    """One platform of the test world: its records' inputs and the tokens it and the hub use."""

    name: str
    roles: tuple[str, ...]
    status: ConnectionStatus = ConnectionStatus.CONNECTED
    registered: bool = True
    #: The origin and base path of its module endpoints ({base}/{module}/{role}).
    base: str = ""
    modules: tuple[str, ...] = MODULES
    token_form: TokenForm = TokenForm.BASE64
    rate_limit: RateLimit | None = None

    @property
    def id(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()[:16]

    @property
    def token_c(self) -> str:
        """What it authenticates to the hub with."""
        return f"token-c-{self.name}"

    @property
    def token_b(self) -> str:
        """What the hub authenticates to it with."""
        return f"token-b-{self.name}" if self.registered else ""

    @property
    def parties(self) -> tuple[PartyKey, ...]:
        return tuple(PartyRole.parse(r).party for r in self.roles)

    def endpoint(self, module: str, role: str) -> str:
        return f"{self.base}/{module}/{role.lower()}"

    def record(self) -> PlatformRecord:
        now = format_datetime(datetime(2026, 1, 1, tzinfo=UTC))
        endpoints = tuple(
            EndpointRecord(m, r, self.endpoint(m, r)) for m in self.modules for r in ("SENDER", "RECEIVER")
        )
        return PlatformRecord(
            id=self.id,
            name=self.name,
            roles=tuple(PartyRole.parse(r) for r in self.roles),
            status=self.status,
            registered=self.registered,
            created=now,
            status_since=now,
            versions_url=f"{self.base.split('/ocpi')[0]}/ocpi/versions",
            version="2.2.1" if self.registered else "",
            endpoints=endpoints if self.registered else (),
            token_b=self.token_b,
            token_form=self.token_form,
            accept_digests=(hashlib.sha256(self.token_c.encode()).hexdigest(),),
            rate_limit=self.rate_limit,
        )


CPO: Final = Party("cpo", ("NL:CPO:CPO",), base="https://cpo.example.com/ocpi/cpo/2.2.1")
#: Calls it with a raw token (2.1.1-era form) and serves plain HTTP on a port.
EMSP: Final = Party(
    "emsp", ("DE:EMS:EMSP",), base="http://emsp.example.com:8080/ocpi/emsp/2.2.1", token_form=TokenForm.RAW
)
MULTI: Final = Party("multi", ("BE:MCP:CPO", "BE:MEM:EMSP"), base="https://multi.example.com/ocpi/2.2.1")
SUSPENDED: Final = Party("suspended", ("NL:SUS:EMSP",), ConnectionStatus.SUSPENDED, base="https://sus.example.com/o")
OFFLINE: Final = Party("offline", ("NL:OFF:EMSP",), ConnectionStatus.OFFLINE, base="https://off.example.com/o")
PLANNED: Final = Party("planned", ("NL:PLA:EMSP",), ConnectionStatus.PLANNED, registered=False)
#: Publishes locations only: no commands, sessions, ... endpoint.
NO_COMMANDS: Final = Party("nocommands", ("NL:NOC:CPO",), base="https://noc.example.com/o", modules=("locations",))
LIMITED: Final = Party("limited", ("FR:LIM:EMSP",), base="https://lim.example.com/o", rate_limit=RateLimit(0.5, 1))
WORLD: Final = (CPO, EMSP, MULTI, SUSPENDED, OFFLINE, PLANNED, NO_COMMANDS, LIMITED)


def routing_table(parties: Iterable[Party] = WORLD, version: int = 7) -> RoutingTable:
    """The snapshot a full reload would build from these parties' stored records."""
    return RoutingTable.build(version, HUB, build_batch([encode_platform(p.record()) for p in parties]), SIGNING)


# -- the outbound client: a scripted receiver -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    """One request the proxy asked the outbound client to send."""

    method: str
    url: str
    headers: list[tuple[bytes, bytes]]
    body: bytes | None
    timeout: float
    sender: str

    def header(self, name: bytes) -> bytes | None:
        """The one value of ``name`` (lowercase); fails when it was sent more than once."""
        values = self.values(name)
        assert len(values) <= 1, f"{name!r} sent {len(values)} times"
        return values[0] if values else None

    def values(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n == name]

    @property
    def names(self) -> list[bytes]:
        return [n for n, _ in self.headers]


@dataclass
class Answer:
    """What the scripted receiver does with one request."""

    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=lambda: [(b"content-type", b"application/json")])
    body: bytes = OK_ENVELOPE
    #: Raised by ``open`` before any answer (what the real client raises for a timeout, a refusal, ...).
    fail: OcpiError | None = None
    #: Raised while the body is read, after the status and headers have arrived.
    fail_mid_body: OcpiError | None = None
    #: Size of each streamed chunk.
    chunk: int = 8


Script = Callable[[Sent], Answer]


class ScriptedUpstream:
    """``hub.http.client.Upstream`` as the proxy uses it: status, headers, ``read_whole``, ``chunks``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.status = answer.status
        self.headers = list(answer.headers)

    async def read_whole(self, limit: int) -> bytes | None:
        if len(self.answer.body) > limit:
            return None
        if self.answer.fail_mid_body is not None:
            raise self.answer.fail_mid_body
        return self.answer.body

    async def chunks(self) -> AsyncIterator[bytes]:
        body, size = self.answer.body, self.answer.chunk
        for start in range(0, len(body), size):
            if start and self.answer.fail_mid_body is not None:
                raise self.answer.fail_mid_body
            yield body[start : start + size]


class ScriptedCall:
    """``hub.http.client.Call``: an async context manager yielding the answer, or raising the scripted failure."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    async def __aenter__(self) -> ScriptedUpstream:
        if self.answer.fail is not None:
            raise self.answer.fail
        return ScriptedUpstream(self.answer)

    async def __aexit__(self, *_exc: object) -> None:
        return None


class ScriptedOutbound:
    """The one method of ``hub.http.client.Outbound`` the proxy calls; every call recorded in ``sent``."""

    def __init__(self, script: Script | None = None) -> None:
        self.script: Script = script or (lambda _sent: Answer())
        self.sent: list[Sent] = []

    def open(
        self,
        method: str,
        url: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes | None,
        timeout: float,
        sender: str = HUB_SENDER,
    ) -> ScriptedCall:
        sent = Sent(method, url, list(headers), body, timeout, sender)
        self.sent.append(sent)
        return ScriptedCall(self.script(sent))

    @property
    def last(self) -> Sent:
        assert self.sent, "nothing was forwarded"
        return self.sent[-1]


# -- the owner index and the server's side ----------------------------------------------------------------------


class KnownOwners(OwnerIndex):
    """The owner index's lookup from a dict instead of Redis (open routing asks it once per request)."""

    def __init__(
        self, redis: Redis, keys: RegistryKeys, known: Mapping[tuple[OwnerKind, str], Iterable[PartyKey]]
    ) -> None:
        super().__init__(redis, keys)
        self.known = {(kind, index_field(key)): frozenset(owners) for (kind, key), owners in known.items()}
        self.asked: list[tuple[OwnerKind, str]] = []

    async def owners(self, kind: OwnerKind, key: str) -> frozenset[PartyKey]:
        self.asked.append((kind, key))
        return self.known.get((kind, index_field(key)), frozenset())


class ConnectionCutError(Exception):
    """The server cut the connection to the requester (the proxy called ``ocpihub.abort``)."""


class ServerSide:
    """What the hub's HTTP server gives the app: the ``ocpihub.abort`` extension; and a record of what was sent.

    After an abort the requester sees a broken connection, so the request ends in ``ConnectionCutError``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.messages: list[Message] = []
        self.aborts = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        aborted = False

        def abort() -> None:
            nonlocal aborted
            aborted = True
            self.aborts += 1

        async def recorded(message: Message) -> None:
            self.messages.append(message)
            await send(message)

        scope = {**scope, "extensions": {**scope.get("extensions", {}), "ocpihub.abort": abort}}
        await self.app(scope, receive, recorded)
        if aborted:
            raise ConnectionCutError


# -- the harness --------------------------------------------------------------------------------------------------


@dataclass
class Harness:
    client: httpx.AsyncClient
    outbound: ScriptedOutbound
    runtime: Runtime
    metrics: CollectorRegistry
    server: ServerSide
    owners: KnownOwners

    def requests(self, module: str, interface: str, outcome: str) -> float:
        """``ocpihub_requests_total`` for one label set (0 when never counted)."""
        return self.counted().get((module, interface, outcome), 0.0)

    def counted(self) -> dict[tuple[str, str, str], float]:
        """Every ``ocpihub_requests_total`` label set counted so far (only that family is collected: the process
        collector beside it would read /proc)."""
        found: dict[tuple[str, str, str], float] = {}
        for family in self.metrics.restricted_registry(["ocpihub_requests_total"]).collect():
            for sample in family.samples:
                if sample.name == "ocpihub_requests_total" and sample.value:
                    labels = sample.labels
                    found[(labels["module"], labels["interface"], labels["outcome"])] = sample.value
        return found


def headers_of(
    party: Party,
    *,
    to: PartyKey | None = None,
    sender: PartyKey | None = None,
    token: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """A request's headers from ``party`` (its token C in the 2.2.1 Base64 form), routed to ``to``."""
    headers = {"Authorization": "Token " + base64.b64encode((token or party.token_c).encode()).decode()}
    if to is not None:
        headers |= {"OCPI-to-country-code": to.country_code, "OCPI-to-party-id": to.party_id}
    if sender is not None:
        headers |= {"OCPI-from-country-code": sender.country_code, "OCPI-from-party-id": sender.party_id}
    headers |= {name.replace("_", "-"): value for name, value in extra.items()}
    return headers


@asynccontextmanager
async def proxy_harness(
    script: Script | None = None,
    *,
    parties: Iterable[Party] = WORLD,
    owners: Mapping[tuple[OwnerKind, str], Iterable[PartyKey]] | None = None,
    **settings: Any,
) -> AsyncIterator[Harness]:
    """The proxy of one hub process on a snapshot of ``parties``, with the receivers answering per ``script``."""
    config = Settings(public_url=HUB_URL, trace_max_records=0, **settings)
    registry = CollectorRegistry()
    redis = Redis.from_url(NO_REDIS)
    keys = RegistryKeys("unit:")
    store = PartyStore(redis, keys)
    holder = SnapshotHolder(store, HUB, config.snapshot_poll_interval)
    holder.table = routing_table(parties)
    index = KnownOwners(redis, keys, owners or {})
    outbound = ScriptedOutbound(script)
    runtime = Runtime(
        settings=config,
        store=store,
        holder=holder,
        # The proxy calls only ``open`` on it (a routed request, a relayed one); the double implements that.
        outbound=cast(Outbound, outbound),
        metrics=HubMetrics(registry),
        tasks=Tasks(),
        hub=HUB,
        base_url=config.base_url,
        holdings=Holdings(ObjectStore(redis, keys), index, config.base_url, config.get_all_limit),
        learner=OwnerLearner(index),
        tracker=None,
    )
    relays = Relays(
        lambda: runtime.holder.table,
        store,
        config.base_url,
        link_ttl=config.link_ttl,
        callback_ttl=config.callback_ttl,
    )
    app = build_app(config, registry)
    app.proxy = Proxy(runtime, relays)
    server = ServerSide(app)
    transport = httpx.ASGITransport(app=server, client=("192.0.2.10", 40000))
    try:
        async with httpx.AsyncClient(transport=transport, base_url=HUB_URL) as client:
            yield Harness(client, outbound, runtime, registry, server, index)
    finally:
        await runtime.tasks.cancel_all()
        await redis.aclose()


def envelope_of(response: httpx.Response) -> dict[str, Any]:
    data = orjson.loads(response.content)
    assert isinstance(data, dict), response.content
    return data
