"""The hub with a real third-party OCPI implementation: extrawest-ocpi 2025.7.16 (``py_ocpi``) on both sides
(issue "Work with the OCPI implementations that exist", point 6).

One in-process hub on a real Redis, started once for the module with four library parties: CPOs NL*CP1 and NL*CP2,
eMSPs BE*EM1 and DE*EM2. NL*CP1 is registered by the operator's ``ocpi-hub registry connect`` (a subprocess),
NL*CP2 and DE*EM2 by ``hub.credentials.connect`` in-process (both hub-initiated, credentials §7.1.1 with the hub as
Sender), BE*EM1 by its own credentials POST. The library CPO publishes no ``commands`` endpoint, so the operator
overrides it (``ocpi-hub registry endpoint`` for NL*CP1, ``PartyStore.set_endpoint_override`` for NL*CP2).

Covered through the hub, in both header forms — the library's own pushes without any routing header (as it sends
them), and requests with routing headers made by the party for the test (its models, its token; pushes are still
the library's ``push_object``, with the headers added to its request):

* Hub Client Info: every party gets the ClientInfo of the three others (hubclientinfo §15), and the list again when
  it is resumed after a suspension (the last test: it changes the world);
* locations: object GET (direct, and open-routed to the owner), list GET followed page by page through the hub's
  relay Links although the library's own Link is unusable (also with a ``date_from`` filter, which the library's
  Link turns into ``None``), push (the library's own, with routing headers added; its header-less push, which
  becomes a broadcast), explicit broadcast, EVSE PATCH (direct and header-less); GET All via the hub of what the
  libraries broadcast (locations, tariffs, tokens, and one object);
* tariffs: push (header-less broadcast, direct), list GET; tokens: push (header-less broadcast, direct) and real-time
  authorization routed to the token's owner without OCPI-to (the library reads ``token_type``, not ``type``);
* sessions: the CPO's header-less push reaches the eMSP named in ``cdr_token``; direct push;
* CDRs: POST (header-less and direct); the ``Location`` the CPO gets back is a hub relay URL that fetches the CDR
  from the eMSP (the library's own Location is unusable);
* commands: START_SESSION, STOP_SESSION, RESERVE_NOW, CANCEL_RESERVATION, UNLOCK_CONNECTOR reaching the CPO through
  the operator's endpoint override, with and without OCPI-to, each result coming back through the rewritten
  ``response_url``;
* charging profiles: SET, GET, CLEAR with results back through the hub, the CPO's ActiveChargingProfile PUT, and the
  spec's SetChargingProfile that the library refuses (passed through unchanged).

Every exchange also checks what the receiving library saw — ``Authorization`` with its own token, a new
``X-Request-ID``, the ``X-Correlation-ID`` kept, ``OCPI-to``/``OCPI-from`` as transport_and_format §4.1.8.6 has the
hub send them — and that the requester's answer carries TO/FROM. Checks are soft (harness.py ``Checks``): the run
ends with "interop checks: N of M hold", and a test fails listing every check of it that did not hold. Library bugs
are not asserted; where the library is broken the checks are on what the hub did (the quirks: harness.py,
party_app.py).

Tests run in file order against the shared world; a test that needs an owner the hub learns from traffic (a session,
a broadcast location) makes that traffic itself first.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from hub.credentials import connect
from registry.codec import EndpointRecord
from registry.keys import RegistryKeys
from registry.store import PartyStore
from routing.model import ConnectionStatus, InterfaceRole, ModuleID, PartyRole
from routing.paths import RELAY_PREFIX
from tests.interop.harness import (
    Checks,
    LibraryParty,
    PartyControl,
    PushOutcome,
    ReceivedRequest,
    Role,
    SendOutcome,
    SentRequest,
    running_party,
    token_header,
)
from tests.support.hubs import TEST_ACTOR, RunningHub, running_hub
from tests.support.processes import hub_env, run_ocpi_hub

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

Party = tuple[str, str]
Header = Callable[[str], str | None]

HUB: Final[Party] = ("ZZ", "HUB")
T0: Final = "2026-01-01T00:00:00Z"
#: A PATCH carries last_updated (mod_locations §8.2.2.3); later than anything seeded.
PATCHED: Final = "2026-02-01T00:00:00Z"
#: How long a test waits for what the hub delivers in the background (a broadcast copy, a result the CPO posts),
#: short enough that a hub that never delivers cannot take the module past its time.
ARRIVAL: Final = 5.0
#: ... and for a routed request: it has reached the receiver before the requester has the answer (the hub reads
#: the receiver's whole answer first), so this only covers the request log being read.
ROUTED: Final = 1.0


# -- the world -----------------------------------------------------------------------------------------------------


@dataclass
class Member:
    """One library party as registered at the hub."""

    party: LibraryParty
    platform_id: str
    how: str  # how it was registered
    hub_token: str  # what it sends the hub (its token C)
    own_token: str  # what the hub sends it (the token it issued)

    @property
    def key(self) -> Party:
        return (self.party.country_code, self.party.party_id)

    @property
    def control(self) -> PartyControl:
        return self.party.control

    def __str__(self) -> str:
        return f"{self.party.country_code}*{self.party.party_id}"

    def headers_to(self, to: Party | Member | None) -> dict[str, str]:
        """Routing headers to ``to`` (None: only FROM, an open-routing request) with fresh request ids."""
        target = to.key if isinstance(to, Member) else to
        headers = self.party.routing_headers(target or HUB)
        if target is None:
            del headers["OCPI-to-country-code"], headers["OCPI-to-party-id"]
        return headers

    def path(self, module: str, rest: str = "") -> str:
        return self.party.module_path(module) + rest


@dataclass
class World:
    hub: RunningHub
    store: PartyStore
    cp1: Member
    cp2: Member
    em1: Member
    em2: Member

    @property
    def members(self) -> tuple[Member, ...]:
        return (self.cp1, self.cp2, self.em1, self.em2)

    @property
    def relay_prefix(self) -> str:
        return self.hub.base_url + RELAY_PREFIX

    async def learnt(self) -> None:
        """Write what routed traffic taught the owner index now (the hub does it every 0.5 s, off the hot path)."""
        runtime = self.hub.app.runtime
        assert runtime is not None
        await runtime.learner.flush()


def location(owner: Party, ident: str, updated: str = T0) -> dict[str, Any]:
    connector = {
        "id": "1",
        "standard": "IEC_62196_T2",
        "format": "SOCKET",
        "power_type": "AC_3_PHASE",
        "max_voltage": 230,
        "max_amperage": 16,
        "last_updated": updated,
    }
    evse = {
        "uid": "EVSE1",
        "evse_id": f"{owner[0]}*{owner[1]}*E1",
        "status": "AVAILABLE",
        "connectors": [connector],
        "last_updated": updated,
    }
    return {
        "country_code": owner[0],
        "party_id": owner[1],
        "id": ident,
        "publish": True,
        "address": "Stationsplein 1",
        "city": "Utrecht",
        "country": "NLD",
        "coordinates": {"latitude": "52.089", "longitude": "5.110"},
        "time_zone": "Europe/Amsterdam",
        "evses": [evse],
        "last_updated": updated,
    }


def tariff(owner: Party, ident: str) -> dict[str, Any]:
    return {
        "country_code": owner[0],
        "party_id": owner[1],
        "id": ident,
        "currency": "EUR",
        "elements": [{"price_components": [{"type": "ENERGY", "price": 0.3, "step_size": 1}]}],
        "last_updated": T0,
    }


def token(owner: Party, uid: str) -> dict[str, Any]:
    return {
        "country_code": owner[0],
        "party_id": owner[1],
        "uid": uid,
        "type": "RFID",
        "contract_id": f"{owner[0]}-{owner[1]}-{uid}",
        "issuer": owner[1],
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": T0,
    }


def cdr_token(emsp: Party, uid: str) -> dict[str, Any]:
    return {"country_code": emsp[0], "party_id": emsp[1], "uid": uid, "type": "RFID", "contract_id": f"C-{uid}"}


def session(owner: Party, ident: str, emsp: Party, uid: str, location_id: str) -> dict[str, Any]:
    return {
        "country_code": owner[0],
        "party_id": owner[1],
        "id": ident,
        "start_date_time": T0,
        "kwh": 5.5,
        "cdr_token": cdr_token(emsp, uid),
        "auth_method": "WHITELIST",
        "location_id": location_id,
        "evse_uid": "EVSE1",
        "connector_id": "1",
        "currency": "EUR",
        "status": "ACTIVE",
        "last_updated": T0,
    }


def cdr(owner: Party, ident: str, emsp: Party, uid: str, location_id: str) -> dict[str, Any]:
    return {
        "country_code": owner[0],
        "party_id": owner[1],
        "id": ident,
        "start_date_time": T0,
        "end_date_time": "2026-01-01T01:00:00Z",
        "cdr_token": cdr_token(emsp, uid),
        "auth_method": "WHITELIST",
        "cdr_location": {
            "id": location_id,
            "address": "Stationsplein 1",
            "city": "Utrecht",
            "country": "NLD",
            "coordinates": {"latitude": "52.089", "longitude": "5.110"},
            "evse_id": f"{owner[0]}*{owner[1]}*E1",
            "connector_id": "1",
            "connector_standard": "IEC_62196_T2",
            "connector_format": "SOCKET",
            "connector_power_type": "AC_3_PHASE",
        },
        "currency": "EUR",
        "charging_periods": [{"start_date_time": T0, "dimensions": [{"type": "ENERGY", "volume": 11.5}]}],
        "total_cost": {"excl_vat": 3.45},
        "total_energy": 11.5,
        "total_time": 1.0,
        "last_updated": T0,
    }


#: NL*CP1's locations, for the page-by-page GET (nothing else adds locations to NL*CP1).
CP1_LOCATIONS: Final = tuple(f"A-LOC{i}" for i in range(1, 6))


async def start_parties(stack: AsyncExitStack, python: Path, workdir: Path) -> tuple[LibraryParty, ...]:
    """The four parties, started side by side (each takes about a second to import the library)."""
    specs: tuple[tuple[Role, str, str], ...] = (
        ("CPO", "NL", "CP1"),
        ("CPO", "NL", "CP2"),
        ("EMSP", "BE", "EM1"),
        ("EMSP", "DE", "EM2"),
    )
    entered = await asyncio.gather(
        *(stack.enter_async_context(running_party(python, role, cc, pid, workdir=workdir)) for role, cc, pid in specs),
        return_exceptions=True,
    )
    for outcome in entered:
        if isinstance(outcome, BaseException):
            raise outcome  # the stack stops the ones that started
    return tuple(p for p in entered if isinstance(p, LibraryParty))


async def member(party: LibraryParty, platform_id: str, how: str) -> Member:
    info = await party.control.info()
    assert info.peer_token is not None, (how, party.log_tail())
    assert len(info.issued_tokens) == 1, info.issued_tokens
    return Member(party, platform_id, how, info.peer_token, info.issued_tokens[0])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(party_python: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    keys = RegistryKeys(prefix=f"test:{uuid.uuid4().hex}:")
    redis = Redis.from_url(redis_url)
    store = PartyStore(redis, keys)
    try:
        async with AsyncExitStack() as stack:
            cp1, cp2, em1, em2 = await start_parties(stack, party_python, tmp_path_factory.mktemp("interop"))
            hub = await stack.enter_async_context(running_hub(redis_url, keys))
            members = await register_all(hub, store, redis_url, keys, (cp1, cp2, em1, em2))
            await override_commands(hub, store, redis_url, keys, members)
            await seed(*members)
            await hub.synced(store)
            yield World(hub, store, *members)
    finally:
        # This module's keys only (their own hash tag), nothing else on the server.
        async for key in redis.scan_iter(match="{" + keys.prefix.rstrip(":") + "}:*"):
            await redis.delete(key)
        await redis.aclose()


async def register_all(
    hub: RunningHub, store: PartyStore, redis_url: str, keys: RegistryKeys, parties: tuple[LibraryParty, ...]
) -> tuple[Member, Member, Member, Member]:
    """Three hub-initiated registrations (one by the CLI, two in-process) and one party-initiated, side by side."""
    cp1, cp2, em1, em2 = parties
    runtime = hub.app.runtime
    assert runtime is not None

    async def by_cli(party: LibraryParty) -> Member:
        done = await run_ocpi_hub(
            "registry",
            "--redis-url",
            redis_url,
            "--public-url",
            hub.base_url,
            "connect",
            "--versions-url",
            party.versions_url,
            "--token-a",
            party.token_a,
            "--party",
            f"{party.country_code}:{party.party_id}:{party.role}",
            "--json",
            env=hub_env(key_prefix=keys.prefix),
        )
        assert done.returncode == 0, (str(done), party.log_tail())
        return await member(party, str(done.json()["id"]), "hub-initiated: ocpi-hub registry connect")

    async def in_process(party: LibraryParty) -> Member:
        record = await connect(
            store,
            runtime.outbound,
            hub.app.identity,
            versions_url=party.versions_url,
            token_a=party.token_a,
            roles=(PartyRole.parse(f"{party.country_code}:{party.party_id}:{party.role}"),),
            name=f"library {party.role} {party.country_code}*{party.party_id}",
            timeout=5.0,
            actor=TEST_ACTOR,
        )
        return await member(party, record.id, "hub-initiated: hub.credentials.connect")

    async def by_itself(party: LibraryParty) -> Member:
        record, token_a = await store.declare(
            [PartyRole.parse(f"{party.country_code}:{party.party_id}:{party.role}")],
            f"library {party.role} {party.country_code}*{party.party_id}",
            actor=TEST_ACTOR,
        )
        await hub.synced(store)
        registration = await party.control.register(hub.versions_url, token_a)
        assert registration.ok, (registration, party.log_tail())
        return await member(party, record.id, "party-initiated: its own credentials POST")

    registered = await asyncio.gather(by_cli(cp1), in_process(cp2), by_itself(em1), in_process(em2))
    await hub.synced(store)
    return registered[0], registered[1], registered[2], registered[3]


async def override_commands(
    hub: RunningHub, store: PartyStore, redis_url: str, keys: RegistryKeys, members: tuple[Member, ...]
) -> None:
    """The library CPO serves /commands/{command} but does not publish it: the operator names it for the hub."""
    cp1, cp2 = members[0], members[1]
    done = await run_ocpi_hub(
        "registry",
        "--redis-url",
        redis_url,
        "endpoint",
        "NL:CP1",
        "--module",
        "commands",
        "--role",
        "RECEIVER",
        "--url",
        cp1.party.module_url("commands"),
        env=hub_env(key_prefix=keys.prefix),
    )
    assert done.returncode == 0, str(done)
    await store.set_endpoint_override(
        cp2.platform_id, EndpointRecord("commands", "RECEIVER", cp2.party.module_url("commands")), actor=TEST_ACTOR
    )
    await hub.synced(store)


async def seed(cp1: Member, cp2: Member, em1: Member, em2: Member) -> None:
    """What the parties' back offices hold before any exchange."""
    a, b = cp1.key, cp2.key
    await asyncio.gather(
        cp1.control.seed(
            "locations", *(location(a, ident, f"2026-01-0{i}T00:00:00Z") for i, ident in enumerate(CP1_LOCATIONS, 1))
        ),
        cp1.control.seed("tariffs", tariff(a, "A-T1")),
        cp1.control.seed("sessions", session(a, "A-S1", em1.key, "E1-TOK1", "A-LOC1")),
        cp1.control.seed("cdrs", cdr(a, "A-CDR1", em1.key, "E1-TOK1", "A-LOC1")),
        cp2.control.seed("locations", location(b, "B-LOC1"), location(b, "B-LOC2")),
        cp2.control.seed("tariffs", tariff(b, "B-T1")),
        cp2.control.seed("sessions", session(b, "B-S1", em2.key, "E2-TOK1", "B-LOC1")),
        cp2.control.seed("cdrs", cdr(b, "B-CDR1", em2.key, "E2-TOK1", "B-LOC1")),
        em1.control.seed("tokens", token(em1.key, "E1-TOK1")),
        em2.control.seed("tokens", token(em2.key, "E2-TOK1")),
    )


# -- what every exchange checks ------------------------------------------------------------------------------------


def routing(header: Header) -> tuple[str | None, str | None, str | None, str | None]:
    """(FROM country, FROM party, TO country, TO party) as a request or an answer carries them."""
    return (
        header("ocpi-from-country-code"),
        header("ocpi-from-party-id"),
        header("ocpi-to-country-code"),
        header("ocpi-to-party-id"),
    )


def at(path: str) -> Callable[[ReceivedRequest], bool]:
    return lambda r: r.path == path


async def arrival(
    checks: Checks,
    what: str,
    receiver: Member,
    since: int,
    match: Callable[[ReceivedRequest], bool],
    timeout: float = ROUTED,
) -> ReceivedRequest | None:
    """The request ``what`` as the receiving library got it (a check of its own), or None when it never came."""
    try:
        seen = await receiver.control.wait_received(match, timeout=timeout, what=what, since=since)
    except AssertionError as exc:
        checks.that(f"{what}: reaches {receiver}", False, str(exc))
        return None
    checks.that(f"{what}: reaches {receiver}", True)
    return seen


def delivered(
    checks: Checks,
    what: str,
    seen: ReceivedRequest | None,
    receiver: Member,
    sender: Party | None,
    sent: Mapping[str, str] | None = None,
) -> None:
    """The receiving side of an exchange: its own token (§4.1.2), a new X-Request-ID and the X-Correlation-ID kept
    (§4.2), and OCPI-from = ``sender``, OCPI-to = the receiver (§4.1.8.6: the hub fills what the requester left
    out; a broadcast copy comes FROM the hub). ``sender`` None: a configuration module (Hub Client Info), where
    routing headers SHALL NOT be used (§4.1.8.1)."""
    token_check = f"{what}: {receiver} gets its own token"
    id_check = f"{what}: {receiver} gets a new X-Request-ID"
    if sender is None:
        routing_check = f"{what}: {receiver} gets no routing headers (configuration module, §4.1.8.1)"
    else:
        routing_check = f"{what}: {receiver} gets FROM {'*'.join(sender)} TO {receiver} (§4.1.8.6)"
    correlation_check = f"{what}: {receiver} gets the requester's X-Correlation-ID"
    names = [token_check, id_check, routing_check]
    if sent is not None and "X-Correlation-ID" in sent:
        names.append(correlation_check)
    if seen is None:
        for name in names:
            checks.that(name, False, "the request did not arrive")
        return
    checks.equal(token_check, seen.header("authorization"), token_header(receiver.own_token))
    request_id, theirs = seen.header("x-request-id"), (sent or {}).get("X-Request-ID")
    checks.that(id_check, bool(request_id) and request_id != theirs, f"got {request_id!r}, the requester's {theirs!r}")
    expected = (None, None, None, None) if sender is None else (*sender, *receiver.key)
    checks.equal(routing_check, routing(seen.header), expected)
    if correlation_check in names:
        checks.equal(correlation_check, seen.header("x-correlation-id"), (sent or {})["X-Correlation-ID"])


def answered(
    checks: Checks,
    what: str,
    header: Header | None,
    requester: Member,
    responder: Party,
    sent: Mapping[str, str] | None = None,
) -> None:
    """The requester's side: the answer carries TO = the requester and FROM = whoever answered (§4.1.8.6), and
    the requester's own X-Request-ID (§4.2)."""
    routing_check = f"{what}: the answer to {requester} carries TO {requester} FROM {'*'.join(responder)}"
    id_check = f"{what}: the answer carries {requester}'s X-Request-ID"
    if header is None:
        checks.that(routing_check, False, "no answer")
        if sent is not None:
            checks.that(id_check, False, "no answer")
        return
    checks.equal(routing_check, routing(header), (*responder, *requester.key))
    if sent is not None:
        checks.equal(id_check, header("x-request-id"), sent["X-Request-ID"])


async def nobody_else(checks: Checks, what: str, other: Member, since: int) -> None:
    """A routed (not broadcast) request went to its receiver only. The requester already has the answer, so the hub
    is done forwarding: nothing can still be on its way to ``other``."""
    got = [f"{r.method} {r.path}" for r in await other.control.received(since)]
    checks.equal(f"{what}: {other} gets nothing", got, [])


def ocpi_status(body: Any) -> Any:
    return body.get("status_code") if isinstance(body, dict) else None


def data_ids(body: Any, field: str = "id") -> list[str]:
    """Ids in an answer's ``data``: the library answers a single object as a one-element list."""
    data = body.get("data") if isinstance(body, dict) else None
    items = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    return [str(item.get(field)) for item in items if isinstance(item, dict)]


def last_sent(outcome: SentRequest | None) -> Header | None:
    return None if outcome is None else outcome.response_header


def push_answer(checks: Checks, what: str, pushed: PushOutcome) -> SentRequest | None:
    """The library push's own request to the hub (its last), and a check that the hub accepted it."""
    final = pushed.sent[-1] if pushed.sent else None
    ok = final is not None and final.status == 200 and ocpi_status(final.response_json) == 1000
    body = final.response_body[:300] if final is not None else pushed.error
    checks.that(f"{what}: the hub accepts the library's push", ok, f"{final.status if final else None}: {body}")
    return final


# -- registration and Hub Client Info ------------------------------------------------------------------------------


async def test_all_four_library_parties_are_connected(world: World, checks: Checks) -> None:
    runtime = world.hub.app.runtime
    assert runtime is not None
    table = runtime.holder.table
    for m in world.members:
        platform = table.platforms.get(m.platform_id)
        checks.that(
            f"{m} ({m.how}) is CONNECTED at the hub",
            platform is not None and platform.status is ConnectionStatus.CONNECTED,
            f"{platform.status if platform else 'no platform'}",
        )
        info = await m.control.info()
        checks.equal(f"{m} holds the hub as its peer", info.peer_versions_url, world.hub.versions_url)
    for cpo in (world.cp1, world.cp2):
        platform = table.platforms.get(cpo.platform_id)
        endpoint = platform.endpoints.get((ModuleID.COMMANDS, InterfaceRole.RECEIVER)) if platform else None
        checks.equal(
            f"{cpo}: the operator's commands endpoint is routed to", endpoint, cpo.party.module_url("commands")
        )
    checks.verify()


async def test_every_party_gets_the_client_info_of_the_others(world: World, checks: Checks) -> None:
    for m in world.members:
        others: set[tuple[str, str, str]] = {(*o.key, o.party.role) for o in world.members if o is not m}
        held = await client_info(m, others)
        checks.that(f"{m} holds the ClientInfo of the three others", others <= set(held), f"it holds {held}")
        checks.that(
            f"{m}: every other party is CONNECTED in its ClientInfo",
            all(held.get(o) == "CONNECTED" for o in others),
            f"it holds {held}",
        )
        seen = next((r for r in await m.control.received() if r.method == "PUT" and "/clientinfo/" in r.path), None)
        what = "ClientInfo PUT"
        checks.that(f"{what}: reaches {m}", seen is not None, "no ClientInfo PUT arrived")
        delivered(checks, what, seen, m, None)
    checks.verify()


async def client_info(m: Member, others: set[tuple[str, str, str]]) -> dict[tuple[str, str, str], str]:
    """(country, party, role) → status of the ClientInfo the library stored, once it holds ``others`` (bounded)."""
    held: dict[tuple[str, str, str], str] = {}
    deadline = asyncio.get_running_loop().time() + ARRIVAL
    while True:
        held = {
            (str(info["country_code"]).upper(), str(info["party_id"]).upper(), str(info["role"])): str(info["status"])
            for info in await m.control.store("clientinfo")
        }
        if others <= set(held) or asyncio.get_running_loop().time() > deadline:
            return held
        await asyncio.sleep(0.05)  # the hub pushes from its scheduler: polled, bounded


# -- locations -----------------------------------------------------------------------------------------------------


async def test_location_object_get_direct_and_open_routed(world: World, checks: Checks) -> None:
    em1, cp1, em2, cp2 = world.em1, world.cp1, world.em2, world.cp2
    # Direct: OCPI-to names the CPO.
    since = await cp1.control.mark()
    headers = em1.headers_to(cp1)
    got = await em1.control.send("GET", module="locations", interface="SENDER", path="A-LOC1", headers=headers)
    what = "location GET (direct)"
    checks.that(
        f"{what}: the CPO's location comes back",
        got.status == 200 and data_ids(got.json) == ["a-loc1"],
        f"{got.status}: {got.body[:300]}",
    )
    seen = await arrival(checks, what, cp1, since, at(cp1.path("locations", "A-LOC1")))
    delivered(checks, what, seen, cp1, em1.key, headers)
    answered(checks, what, got.header, em1, cp1.key, headers)

    # Open routing: no OCPI-to; the hub knows the owner of B-LOC1 from its broadcast.
    pushed = await cp2.control.push("locations", "B-LOC1", headers=cp2.headers_to(HUB))
    assert pushed.ok and pushed.sent[-1].status == 200, pushed
    since = await cp2.control.mark()
    headers = em2.headers_to(None)
    got = await em2.control.send("GET", module="locations", interface="SENDER", path="B-LOC1", headers=headers)
    what = "location GET (open routing)"
    checks.that(
        f"{what}: the owner's location comes back",
        got.status == 200 and data_ids(got.json) == ["b-loc1"],
        f"{got.status}: {got.body[:300]}",
    )
    seen = await arrival(checks, what, cp2, since, at(cp2.path("locations", "B-LOC1")))
    delivered(checks, what, seen, cp2, em2.key, headers)
    answered(checks, what, got.header, em2, cp2.key, headers)
    checks.verify()


@dataclass
class Crawl:
    """A list GET followed page by page through the Links the hub gave."""

    pages: list[SendOutcome]
    sent: list[dict[str, str]]  # the headers of each page's request
    links: list[str]
    ids: list[str]
    failed: str | None


async def crawl(emsp: Member, cpo: Member, params: Mapping[str, str]) -> Crawl:
    """GET the CPO's locations through the hub, then follow each Link with the eMSP's token only (the hub restores
    the routing headers of the first request), to the last page (at most ten)."""
    headers = emsp.headers_to(cpo)
    page = await emsp.control.send("GET", module="locations", interface="SENDER", headers=headers, params=params)
    result = Crawl([page], [headers], [], [], None)
    while len(result.pages) <= 10:
        if page.status != 200:
            result.failed = f"{page.status}: {page.body[:300]}"
            break
        result.ids += data_ids(page.json)
        link = page.header("link")
        if not link:
            break
        result.links.append(link[link.find("<") + 1 : link.find(">")])
        headers = {"X-Request-ID": secrets.token_hex(8)}
        page = await emsp.control.send("GET", url=result.links[-1], headers=headers)
        result.pages.append(page)
        result.sent.append(headers)
    return result


async def test_location_list_is_followed_page_by_page_through_the_hub(world: World, checks: Checks) -> None:
    em1, cp1 = world.em1, world.cp1
    since = await cp1.control.mark()
    got = await crawl(em1, cp1, {"limit": "2"})
    what = "location list GET"
    checks.that(f"{what}: every page is served", got.failed is None, str(got.failed))
    checks.equal(f"{what}: X-Total-Count passes through", got.pages[0].header("x-total-count"), str(len(CP1_LOCATIONS)))
    checks.equal(f"{what}: every location is seen exactly once", sorted(got.ids), [i.lower() for i in CP1_LOCATIONS])
    checks.equal(f"{what}: a Link for each following page", len(got.links), 2)
    checks.that(
        f"{what}: every Link is a hub relay URL",
        bool(got.links) and all(link.startswith(world.relay_prefix) for link in got.links),
        f"{got.links}",
    )
    received = await cp1.control.received(since)
    own_link = received[0].response_header("link") if received else None
    checks.that(
        f"{what}: the hub replaced the library's unusable Link",
        own_link is not None and "VersionNumber" in own_link and all("VersionNumber" not in k for k in got.links),
        f"library: {own_link!r}, hub: {got.links}",
    )
    for label, index in (("first page", 0), ("page by relay Link", 1)):
        seen = received[index] if len(received) > index else None
        page = got.pages[index] if len(got.pages) > index else None
        delivered(checks, f"{what} ({label})", seen, cp1, em1.key, got.sent[index] if page else None)
        answered(
            checks, f"{what} ({label})", page.header if page else None, em1, cp1.key, got.sent[index] if page else None
        )

    # With a filter: the library's own Link turns it into date_from=None; the hub's keeps it (§4.1.4.1 "Link").
    since = await cp1.control.mark()
    got = await crawl(em1, cp1, {"date_from": "2026-01-03T00:00:00Z", "limit": "2"})
    what = "location list GET with date_from"
    checks.that(f"{what}: every page is served", got.failed is None, str(got.failed))
    checks.equal(
        f"{what}: every matching location is seen exactly once", sorted(got.ids), ["a-loc3", "a-loc4", "a-loc5"]
    )
    queries = [r.query for r in await cp1.control.received(since)]
    checks.that(
        f"{what}: every page the CPO serves keeps the filter",
        len(queries) == 2 and all(parse_qs(q).get("date_from") == ["2026-01-03T00:00:00Z"] for q in queries),
        f"{queries}",
    )
    checks.verify()


async def test_location_push_direct_with_routing_headers(world: World, checks: Checks) -> None:
    cp1, em1 = world.cp1, world.em1
    since = await em1.control.mark()
    headers = cp1.headers_to(em1)
    pushed = await cp1.control.push("locations", "A-LOC1", headers=headers)
    what = "location push (library, routing headers added)"
    final = push_answer(checks, what, pushed)
    seen = await arrival(checks, what, em1, since, at(em1.path("locations", "NL/CP1/A-LOC1")))
    delivered(checks, what, seen, em1, cp1.key, headers)
    answered(checks, what, last_sent(final), cp1, em1.key, headers)
    stored = [(loc["country_code"], loc["id"]) for loc in await em1.control.store("locations")]
    checks.that(f"{what}: the eMSP stores it", ("nl", "a-loc1") in stored, f"{stored}")
    checks.verify()


async def test_library_push_without_routing_headers_is_broadcast(world: World, checks: Checks) -> None:
    cp1 = world.cp1
    marks = {m.platform_id: await m.control.mark() for m in (world.em1, world.em2)}
    pushed = await cp1.control.push("locations", "A-LOC2")
    what = "location push (library, no routing headers)"
    final = push_answer(checks, what, pushed)
    answered(checks, what, last_sent(final), cp1, HUB)
    for emsp in (world.em1, world.em2):
        path = emsp.path("locations", "NL/CP1/A-LOC2")
        seen = await arrival(
            checks, f"{what}: broadcast copy", emsp, marks[emsp.platform_id], at(path), timeout=ARRIVAL
        )
        delivered(checks, f"{what}: broadcast copy", seen, emsp, HUB)
        stored = [loc["id"] for loc in await emsp.control.store("locations")]
        checks.that(f"{what}: {emsp} stores it", "a-loc2" in stored, f"{stored}")
    checks.verify()


async def test_explicit_broadcast_reaches_every_emsp(world: World, checks: Checks) -> None:
    cp2 = world.cp2
    marks = {m.platform_id: await m.control.mark() for m in (world.em1, world.em2)}
    headers = cp2.headers_to(HUB)
    pushed = await cp2.control.push("locations", "B-LOC2", headers=headers)
    what = "location broadcast (library push, OCPI-to = hub)"
    answered(checks, what, last_sent(push_answer(checks, what, pushed)), cp2, HUB, headers)
    for emsp in (world.em1, world.em2):
        path = emsp.path("locations", "NL/CP2/B-LOC2")
        seen = await arrival(checks, f"{what}: copy", emsp, marks[emsp.platform_id], at(path), timeout=ARRIVAL)
        delivered(checks, f"{what}: copy", seen, emsp, HUB, headers)
    checks.verify()


async def test_evse_patch_direct_and_without_routing_headers(world: World, checks: Checks) -> None:
    cp1, em1, em2 = world.cp1, world.em1, world.em2
    # The eMSP must hold the location first (a PUT of it, directly).
    pushed = await cp1.control.push("locations", "A-LOC1", headers=cp1.headers_to(em1))
    assert pushed.ok and pushed.sent[-1].status == 200, pushed
    since = await em1.control.mark()
    headers = cp1.headers_to(em1)
    got = await cp1.control.patch_evse(
        ("NL", "CP1", "A-LOC1"), "EVSE1", {"status": "CHARGING", "last_updated": PATCHED}, headers=headers
    )
    what = "EVSE PATCH (direct)"
    checks.that(f"{what}: accepted", got.status == 200 and ocpi_status(got.json) == 1000, f"{got.status}: {got.body}")
    seen = await arrival(checks, what, em1, since, lambda r: r.method == "PATCH")
    delivered(checks, what, seen, em1, cp1.key, headers)
    answered(checks, what, got.header, cp1, em1.key, headers)
    statuses = {loc["id"]: [e["status"] for e in loc["evses"]] for loc in await em1.control.store("locations")}
    checks.equal(f"{what}: the eMSP's EVSE is CHARGING", statuses.get("a-loc1"), ["CHARGING"])

    # Without routing headers, a PATCH of the CPO's own location is a broadcast (both eMSPs hold A-LOC2).
    marks = {m.platform_id: await m.control.mark() for m in (em1, em2)}
    got = await cp1.control.patch_evse(("NL", "CP1", "A-LOC2"), "EVSE1", {"status": "BLOCKED", "last_updated": PATCHED})
    what = "EVSE PATCH (no routing headers)"
    checks.that(f"{what}: accepted", got.status == 200 and ocpi_status(got.json) == 1000, f"{got.status}: {got.body}")
    answered(checks, what, got.header, cp1, HUB)
    for emsp in (em1, em2):
        seen = await arrival(
            checks,
            f"{what}: broadcast copy",
            emsp,
            marks[emsp.platform_id],
            lambda r: r.method == "PATCH",
            timeout=ARRIVAL,
        )
        delivered(checks, f"{what}: broadcast copy", seen, emsp, HUB)
    checks.verify()


# -- tariffs and tokens --------------------------------------------------------------------------------------------


async def test_tariffs_pushed_and_listed(world: World, checks: Checks) -> None:
    cp1, cp2, em1, em2 = world.cp1, world.cp2, world.em1, world.em2
    marks = {m.platform_id: await m.control.mark() for m in (em1, em2)}
    pushed = await cp1.control.push("tariffs", "A-T1")
    what = "tariff push (library, no routing headers)"
    answered(checks, what, last_sent(push_answer(checks, what, pushed)), cp1, HUB)
    for emsp in (em1, em2):
        path = emsp.path("tariffs", "NL/CP1/A-T1")
        seen = await arrival(
            checks, f"{what}: broadcast copy", emsp, marks[emsp.platform_id], at(path), timeout=ARRIVAL
        )
        delivered(checks, f"{what}: broadcast copy", seen, emsp, HUB)
        stored = [t["id"] for t in await emsp.control.store("tariffs")]
        checks.that(f"{what}: {emsp} stores it", "a-t1" in stored, f"{stored}")

    since = await em2.control.mark()
    headers = cp2.headers_to(em2)
    pushed = await cp2.control.push("tariffs", "B-T1", headers=headers)
    what = "tariff push (library, routing headers added)"
    final = push_answer(checks, what, pushed)
    seen = await arrival(checks, what, em2, since, at(em2.path("tariffs", "NL/CP2/B-T1")))
    delivered(checks, what, seen, em2, cp2.key, headers)
    answered(checks, what, last_sent(final), cp2, em2.key, headers)

    since = await cp1.control.mark()
    headers = em1.headers_to(cp1)
    got = await em1.control.send("GET", module="tariffs", interface="SENDER", headers=headers)
    what = "tariff list GET"
    checks.that(
        f"{what}: the CPO's tariffs come back",
        got.status == 200 and data_ids(got.json) == ["a-t1"],
        f"{got.status}: {got.body[:300]}",
    )
    seen = await arrival(checks, what, cp1, since, lambda r: r.path.startswith(cp1.path("tariffs")))
    delivered(checks, what, seen, cp1, em1.key, headers)
    answered(checks, what, got.header, em1, cp1.key, headers)
    checks.verify()


async def test_tokens_pushed_and_authorized_in_real_time(world: World, checks: Checks) -> None:
    cp1, cp2, em1, em2 = world.cp1, world.cp2, world.em1, world.em2
    marks = {m.platform_id: await m.control.mark() for m in (cp1, cp2)}
    pushed = await em1.control.push("tokens", "E1-TOK1")
    what = "token push (library, no routing headers)"
    answered(checks, what, last_sent(push_answer(checks, what, pushed)), em1, HUB)
    for cpo in (cp1, cp2):
        path = cpo.path("tokens", "BE/EM1/E1-TOK1")
        seen = await arrival(checks, f"{what}: broadcast copy", cpo, marks[cpo.platform_id], at(path), timeout=ARRIVAL)
        delivered(checks, f"{what}: broadcast copy", seen, cpo, HUB)
        stored = [t["uid"] for t in await cpo.control.store("tokens")]
        checks.that(f"{what}: {cpo} stores it", "e1-tok1" in stored, f"{stored}")

    since = await cp2.control.mark()
    headers = em2.headers_to(cp2)
    pushed = await em2.control.push("tokens", "E2-TOK1", headers=headers)
    what = "token push (library, routing headers added)"
    final = push_answer(checks, what, pushed)
    seen = await arrival(checks, what, cp2, since, at(cp2.path("tokens", "DE/EM2/E2-TOK1")))
    delivered(checks, what, seen, cp2, em2.key, headers)
    answered(checks, what, last_sent(final), em2, cp2.key, headers)

    # Real-time authorization without OCPI-to: the hub finds the token's owner (it learnt it from the broadcast).
    # ``type=RFID`` is the spec's query; the library reads ``token_type`` and defaults to RFID, so it still matches.
    await em1.control.configure(authorize_allowed="ALLOWED", authorization_reference="AUTH-E1")
    since = await em1.control.mark()
    headers = cp1.headers_to(None)
    got = await cp1.control.authorize(
        "E1-TOK1", location={"location_id": "A-LOC1", "evse_uids": ["EVSE1"]}, token_type="RFID", headers=headers
    )
    what = "authorize (open routing)"
    info = (got.json or {}).get("data") if isinstance(got.json, dict) else None
    first = info[0] if isinstance(info, list) and info else info if isinstance(info, dict) else {}
    checks.that(
        f"{what}: the owner's AuthorizationInfo comes back",
        got.status == 200 and first.get("allowed") == "ALLOWED" and first.get("authorization_reference") == "auth-e1",
        f"{got.status}: {got.body[:300]}",
    )
    seen = await arrival(checks, what, em1, since, at(em1.path("tokens", "E1-TOK1/authorize")))
    delivered(checks, what, seen, em1, cp1.key, headers)
    checks.equal(f"{what}: the query reaches {em1} as sent", seen.query if seen else None, "type=RFID")
    answered(checks, what, got.header, cp1, em1.key, headers)

    since = await em2.control.mark()
    headers = cp2.headers_to(em2)
    got = await cp2.control.authorize("E2-TOK1", headers=headers)
    what = "authorize (direct)"
    checks.that(
        f"{what}: answered by the eMSP",
        got.status == 200 and ocpi_status(got.json) == 1000,
        f"{got.status}: {got.body[:300]}",
    )
    seen = await arrival(checks, what, em2, since, at(em2.path("tokens", "E2-TOK1/authorize")))
    delivered(checks, what, seen, em2, cp2.key, headers)
    answered(checks, what, got.header, cp2, em2.key, headers)
    checks.verify()


async def test_get_all_via_hub_serves_what_the_library_broadcast(world: World, checks: Checks) -> None:
    """What the libraries broadcast without routing headers, kept by the hub in the owners' lower-cased spelling and
    served with OCPI-to = the hub (§4.1.8.5), the header-less EVSE PATCH applied."""
    em2, cp2 = world.em2, world.cp2
    for requester, module, wanted in (
        (em2, "locations", {("NL", "CP1", "A-LOC2"), ("NL", "CP2", "B-LOC1"), ("NL", "CP2", "B-LOC2")}),
        (em2, "tariffs", {("NL", "CP1", "A-T1")}),
        (cp2, "tokens", {("BE", "EM1", "E1-TOK1")}),
    ):
        what = f"GET All {module} via the hub"
        headers = requester.headers_to(HUB)
        got = await requester.control.send("GET", module=module, interface="SENDER", headers=headers)
        data = got.json.get("data") if isinstance(got.json, dict) else None
        held = {
            (
                str(o.get("country_code")).upper(),
                str(o.get("party_id")).upper(),
                str(o.get("uid", o.get("id"))).upper(),
            ): o
            for o in (data if isinstance(data, list) else [])
            if isinstance(o, dict)
        }
        checks.that(
            f"{what}: holds what was broadcast",
            got.status == 200 and wanted <= set(held),
            f"{got.status}: {sorted(held)}",
        )
        answered(checks, what, got.header, requester, HUB, headers)
        if module == "locations":
            evses = (held.get(("NL", "CP1", "A-LOC2")) or {}).get("evses") or []
            checks.equal(
                f"{what}: the header-less EVSE PATCH was applied", [e.get("status") for e in evses], ["BLOCKED"]
            )
    what = "location GET of one object via the hub"
    headers = em2.headers_to(HUB)
    got = await em2.control.send("GET", module="locations", interface="SENDER", path="NL/CP1/A-LOC2", headers=headers)
    checks.that(
        f"{what}: served from the hub's store",
        got.status == 200 and data_ids(got.json) == ["a-loc2"],
        f"{got.status}: {got.body[:300]}",
    )
    answered(checks, what, got.header, em2, HUB, headers)
    checks.verify()


# -- sessions and CDRs ---------------------------------------------------------------------------------------------


async def test_session_push_reaches_the_emsp_in_cdr_token(world: World, checks: Checks) -> None:
    cp1, cp2, em1, em2 = world.cp1, world.cp2, world.em1, world.em2
    since, other = await em1.control.mark(), await em2.control.mark()
    pushed = await cp1.control.push("sessions", "A-S1")
    what = "session push (library, no routing headers)"
    answered(checks, what, last_sent(push_answer(checks, what, pushed)), cp1, em1.key)
    seen = await arrival(checks, what, em1, since, at(em1.path("sessions", "NL/CP1/A-S1")))
    delivered(checks, what, seen, em1, cp1.key)
    await nobody_else(checks, what, em2, other)
    stored = [s["id"] for s in await em1.control.store("sessions")]
    checks.that(f"{what}: {em1} stores it", "a-s1" in stored, f"{stored}")

    since = await em2.control.mark()
    headers = cp2.headers_to(em2)
    pushed = await cp2.control.push("sessions", "B-S1", headers=headers)
    what = "session push (library, routing headers added)"
    final = push_answer(checks, what, pushed)
    seen = await arrival(checks, what, em2, since, at(em2.path("sessions", "NL/CP2/B-S1")))
    delivered(checks, what, seen, em2, cp2.key, headers)
    answered(checks, what, last_sent(final), cp2, em2.key, headers)
    checks.verify()


async def test_cdr_post_and_its_location_through_the_hub(world: World, checks: Checks) -> None:
    cp1, cp2, em1, em2 = world.cp1, world.cp2, world.em1, world.em2
    since, other = await em1.control.mark(), await em2.control.mark()
    pushed = await cp1.control.push("cdrs", "A-CDR1")
    what = "CDR POST (library, no routing headers)"
    final = push_answer(checks, what, pushed)
    answered(checks, what, last_sent(final), cp1, em1.key)
    seen = await arrival(checks, what, em1, since, lambda r: r.method == "POST" and r.path == em1.path("cdrs"))
    delivered(checks, what, seen, em1, cp1.key)
    await nobody_else(checks, what, em2, other)
    await fetch_cdr(checks, world, what, cp1, em1, final.response_header("location") if final else None, "a-cdr1")

    since = await em2.control.mark()
    headers = cp2.headers_to(em2)
    pushed = await cp2.control.push("cdrs", "B-CDR1", headers=headers)
    what = "CDR POST (library, routing headers added)"
    final = push_answer(checks, what, pushed)
    seen = await arrival(checks, what, em2, since, lambda r: r.method == "POST" and r.path == em2.path("cdrs"))
    delivered(checks, what, seen, em2, cp2.key, headers)
    answered(checks, what, last_sent(final), cp2, em2.key, headers)
    await fetch_cdr(checks, world, what, cp2, em2, final.response_header("location") if final else None, "b-cdr1")
    checks.verify()


async def fetch_cdr(
    checks: Checks, world: World, what: str, cpo: Member, emsp: Member, location_url: str | None, cdr_id: str
) -> None:
    """The CPO follows the Location the hub gave it (its token only) and gets the CDR the eMSP stores."""
    checks.that(
        f"{what}: the Location is a hub relay URL",
        location_url is not None and location_url.startswith(world.relay_prefix),
        f"{location_url!r}",
    )
    if location_url is None or not location_url.startswith("http"):
        checks.that(f"{what}: the Location fetches the CDR from {emsp}", False, "no usable Location")
        return
    since = await emsp.control.mark()
    headers = {"X-Request-ID": secrets.token_hex(8)}
    got = await cpo.control.send("GET", url=location_url, headers=headers)
    checks.that(
        f"{what}: the Location fetches the CDR from {emsp}",
        got.status == 200 and data_ids(got.json) == [cdr_id],
        f"{got.status}: {got.body[:300]}",
    )
    seen = await arrival(checks, f"{what}: Location GET", emsp, since, lambda r: r.method == "GET")
    delivered(checks, f"{what}: Location GET", seen, emsp, cpo.key, headers)
    answered(checks, f"{what}: Location GET", got.header, cpo, emsp.key, headers)


async def result_sent(cpo: Member, url: str | None, since: int) -> SentRequest | None:
    """The library CPO's POST of a result to ``url`` (the response_url it got), or None when it sent none."""
    if url is None:
        return None
    try:
        return await cpo.control.wait_sent(
            lambda s: s.method == "POST" and s.url == url, timeout=ARRIVAL, what="the result", since=since
        )
    except AssertionError:
        return None


# -- commands ------------------------------------------------------------------------------------------------------


async def command_exchange(
    checks: Checks,
    world: World,
    emsp: Member,
    cpo: Member,
    command: str,
    body: dict[str, Any],
    uid: str,
    *,
    open_routing: bool,
) -> None:
    """eMSP → hub → CPO (through the operator's endpoint), and the CPO's result back to the eMSP's response_url
    through the relay URL the hub put in its place (mod_commands §13.2)."""
    what = f"{command} ({'open routing' if open_routing else 'direct'})"
    response_url = emsp.party.module_url("commands") + uid
    cpo_since, cpo_sent, emsp_since = await cpo.control.mark(), await cpo.control.sent_mark(), await emsp.control.mark()
    headers = emsp.headers_to(None if open_routing else cpo)
    got = await emsp.control.command(command, {"response_url": response_url, **body}, headers=headers)
    data = got.json.get("data") if isinstance(got.json, dict) else None
    result = data[0] if isinstance(data, list) and data else data
    checks.that(
        f"{what}: the CPO's CommandResponse comes back",
        got.status == 200 and isinstance(result, dict) and result.get("result") == "ACCEPTED",
        f"{got.status}: {got.body[:300]}",
    )
    seen = await arrival(checks, what, cpo, cpo_since, at(cpo.path("commands", command)))
    delivered(checks, what, seen, cpo, emsp.key, headers)
    answered(checks, what, got.header, emsp, cpo.key, headers)
    found = (seen.json or {}).get("response_url") if seen is not None else None
    rewritten = found if isinstance(found, str) else None
    checks.that(
        f"{what}: the CPO gets a hub relay URL as response_url",
        isinstance(rewritten, str) and rewritten.startswith(world.relay_prefix) and rewritten.endswith("/" + uid),
        f"{rewritten!r}",
    )
    # The library CPO posts the result to the response_url it got, with the token the hub gave it.
    callback = await result_sent(cpo, rewritten, cpo_sent)
    checks.that(
        f"{what}: the hub accepts the CPO's result on the relay URL",
        callback is not None and callback.status == 200,
        f"{callback.status if callback else None}: {callback.response_body[:300] if callback else 'not sent'}",
    )
    answered(checks, f"{what} result", last_sent(callback), cpo, emsp.key)
    arrived = await arrival(
        checks,
        f"{what} result",
        emsp,
        emsp_since,
        lambda r: r.method == "POST" and r.path == emsp.path("commands", uid),
    )
    delivered(checks, f"{what} result", arrived, emsp, cpo.key)
    results = await emsp.control.store("command_results")
    checks.equal(f"{what}: {emsp} stores the CommandResult", results.get(uid), [{"result": "ACCEPTED", "message": []}])


async def test_commands_reach_the_cpo_through_the_operators_endpoint(world: World, checks: Checks) -> None:
    cp1, cp2, em1, em2 = world.cp1, world.cp2, world.em1, world.em2
    tok1, tok2 = token(em1.key, "E1-TOK1"), token(em2.key, "E2-TOK1")
    await command_exchange(
        checks,
        world,
        em1,
        cp1,
        "START_SESSION",
        {"token": tok1, "location_id": "A-LOC1", "evse_uid": "EVSE1"},
        "CMD-A1",
        open_routing=False,
    )
    # STOP_SESSION without OCPI-to goes to the CPO that pushed the session (the owner index learnt it).
    pushed = await cp1.control.push("sessions", "A-S1")
    assert pushed.ok, pushed
    await world.learnt()
    await command_exchange(checks, world, em1, cp1, "STOP_SESSION", {"session_id": "A-S1"}, "CMD-A2", open_routing=True)
    # START_SESSION without OCPI-to goes to the CPO that broadcast the location.
    await cp2.control.push("locations", "B-LOC1")
    await command_exchange(
        checks,
        world,
        em2,
        cp2,
        "START_SESSION",
        {"token": tok2, "location_id": "B-LOC1", "evse_uid": "EVSE1"},
        "CMD-B1",
        open_routing=True,
    )
    await command_exchange(
        checks,
        world,
        em2,
        cp2,
        "RESERVE_NOW",
        {"token": tok2, "expiry_date": "2030-01-01T00:00:00Z", "reservation_id": "R-B1", "location_id": "B-LOC1"},
        "CMD-B2",
        open_routing=False,
    )
    # CANCEL_RESERVATION without OCPI-to goes to the CPO that got the RESERVE_NOW.
    await world.learnt()
    await command_exchange(
        checks, world, em2, cp2, "CANCEL_RESERVATION", {"reservation_id": "R-B1"}, "CMD-B3", open_routing=True
    )
    await command_exchange(
        checks,
        world,
        em2,
        cp2,
        "UNLOCK_CONNECTOR",
        {"location_id": "B-LOC1", "evse_uid": "EVSE1", "connector_id": "1"},
        "CMD-B4",
        open_routing=False,
    )
    checks.verify()


# -- charging profiles ---------------------------------------------------------------------------------------------

#: The library's ChargingProfile: ``charging_profile_period`` is one object where the spec has a list
#: (mod_charging_profiles §16.3); the library refuses the spec's form with 422.
LIBRARY_PROFILE: Final = {
    "charging_rate_unit": "W",
    "min_charge_rate": 1000,
    "charging_profile_period": {"start_period": 0, "limit": 11000},
}
SPEC_PROFILE: Final = LIBRARY_PROFILE | {"charging_profile_period": [{"start_period": 0, "limit": 11000}]}


async def profile_result(
    checks: Checks,
    world: World,
    what: str,
    cpo: Member,
    emsp: Member,
    seen: ReceivedRequest | None,
    request: str,
    cpo_sent: int,
    emsp_since: int,
) -> None:
    """The CPO's result for a charging profile request reaches the eMSP's response_url through the hub's relay."""
    found: Any = None
    if seen is not None:
        found = (
            (seen.json or {}).get("response_url") if seen.method == "PUT" else parse_qs(seen.query).get("response_url")
        )
        found = found[0] if isinstance(found, list) else found
    rewritten = found if isinstance(found, str) else None
    checks.that(
        f"{what}: the CPO gets a hub relay URL as response_url",
        isinstance(rewritten, str) and rewritten.startswith(world.relay_prefix) and f"request={request}" in rewritten,
        f"{rewritten!r}",
    )
    callback = await result_sent(cpo, rewritten, cpo_sent)
    checks.that(
        f"{what}: the hub accepts the CPO's result on the relay URL",
        callback is not None and callback.status == 200,
        f"{callback.status if callback else None}: {callback.response_body[:300] if callback else 'not sent'}",
    )
    answered(checks, f"{what} result", last_sent(callback), cpo, emsp.key)
    arrived = await arrival(
        checks,
        f"{what} result",
        emsp,
        emsp_since,
        lambda r: r.method == "POST" and r.path == emsp.path("chargingprofiles") and f"request={request}" in r.query,
    )
    delivered(checks, f"{what} result", arrived, emsp, cpo.key)
    results = [r for r in await emsp.control.store("chargingprofile_results") if r["query"].get("request") == request]
    # What the result says is the library's business (its SET loop always ends in REJECTED); that it came is ours.
    checks.that(f"{what}: {emsp} stores the result", len(results) == 1, f"{results}")


async def test_charging_profiles_through_the_hub(world: World, checks: Checks) -> None:
    cp1, em1 = world.cp1, world.em1
    pushed = await cp1.control.push("sessions", "A-S1")  # the hub learns who runs A-S1, for open routing
    assert pushed.ok, pushed
    await world.learnt()
    results_url = em1.party.module_url("chargingprofiles")

    # SET (direct), in the library's own ChargingProfile form.
    what = "SetChargingProfile (direct)"
    cp_since, cp_sent, em_since = await cp1.control.mark(), await cp1.control.sent_mark(), await em1.control.mark()
    headers = em1.headers_to(cp1)
    got = await em1.control.send(
        "PUT",
        module="chargingprofiles",
        interface="RECEIVER",
        path="A-S1",
        headers=headers,
        json={"charging_profile": LIBRARY_PROFILE, "response_url": results_url + "?request=set"},
        model="chargingprofiles.SetChargingProfile",
    )
    checks.that(
        f"{what}: the CPO's ChargingProfileResponse comes back",
        got.status == 200 and (data_ids(got.json, "result") == ["ACCEPTED"]),
        f"{got.status}: {got.body[:300]}",
    )
    seen = await arrival(checks, what, cp1, cp_since, at(cp1.path("chargingprofiles", "A-S1")))
    delivered(checks, what, seen, cp1, em1.key, headers)
    answered(checks, what, got.header, em1, cp1.key, headers)
    await profile_result(checks, world, what, cp1, em1, seen, "set", cp_sent, em_since)

    # GET the active profile without OCPI-to: the CPO of session A-S1.
    what = "GET ActiveChargingProfile (open routing)"
    cp_since, cp_sent, em_since = await cp1.control.mark(), await cp1.control.sent_mark(), await em1.control.mark()
    headers = em1.headers_to(None)
    got = await em1.control.send(
        "GET",
        module="chargingprofiles",
        interface="RECEIVER",
        path="A-S1",
        headers=headers,
        params={"duration": "900", "response_url": results_url + "?request=get"},
    )
    checks.that(
        f"{what}: the CPO's ChargingProfileResponse comes back",
        got.status == 200 and (data_ids(got.json, "result") == ["ACCEPTED"]),
        f"{got.status}: {got.body[:300]}",
    )
    seen = await arrival(checks, what, cp1, cp_since, at(cp1.path("chargingprofiles", "A-S1")))
    delivered(checks, what, seen, cp1, em1.key, headers)
    answered(checks, what, got.header, em1, cp1.key, headers)
    await profile_result(checks, world, what, cp1, em1, seen, "get", cp_sent, em_since)

    # CLEAR (direct).
    what = "ClearProfile (direct)"
    cp_since, cp_sent, em_since = await cp1.control.mark(), await cp1.control.sent_mark(), await em1.control.mark()
    headers = em1.headers_to(cp1)
    got = await em1.control.send(
        "DELETE",
        module="chargingprofiles",
        interface="RECEIVER",
        path="A-S1",
        headers=headers,
        params={"response_url": results_url + "?request=clear"},
    )
    checks.that(
        f"{what}: the CPO's ChargingProfileResponse comes back",
        got.status == 200 and (data_ids(got.json, "result") == ["ACCEPTED"]),
        f"{got.status}: {got.body[:300]}",
    )
    seen = await arrival(checks, what, cp1, cp_since, at(cp1.path("chargingprofiles", "A-S1")))
    delivered(checks, what, seen, cp1, em1.key, headers)
    answered(checks, what, got.header, em1, cp1.key, headers)
    await profile_result(checks, world, what, cp1, em1, seen, "clear", cp_sent, em_since)

    # The CPO's own ActiveChargingProfile PUT to the eMSP's Sender interface (mod_charging_profiles §14.2.2).
    what = "ActiveChargingProfile PUT (direct)"
    em_since = await em1.control.mark()
    headers = cp1.headers_to(em1)
    got = await cp1.control.send(
        "PUT",
        module="chargingprofiles",
        interface="SENDER",
        path="A-S1",
        headers=headers,
        json={"start_date_time": T0, "charging_profile": LIBRARY_PROFILE},
        model="chargingprofiles.ActiveChargingProfile",
    )
    checks.that(f"{what}: accepted", got.status == 200 and ocpi_status(got.json) == 1000, f"{got.status}: {got.body}")
    seen = await arrival(checks, what, em1, em_since, at(em1.path("chargingprofiles", "A-S1")))
    delivered(checks, what, seen, em1, cp1.key, headers)
    answered(checks, what, got.header, cp1, em1.key, headers)
    active = await em1.control.store("active_chargingprofiles")
    checks.that(f"{what}: {em1} stores it", "A-S1" in active, f"{active}")

    # The spec's SetChargingProfile (a list of periods): the library refuses it; the hub forwards it with only the
    # response_url changed and passes the library's refusal back as it is.
    what = "SetChargingProfile in the spec's form"
    cp_since = await cp1.control.mark()
    headers = em1.headers_to(cp1)
    got = await em1.control.send(
        "PUT",
        module="chargingprofiles",
        interface="RECEIVER",
        path="A-S1",
        headers=headers,
        json={"charging_profile": SPEC_PROFILE, "response_url": results_url + "?request=spec"},
    )
    seen = await arrival(checks, what, cp1, cp_since, at(cp1.path("chargingprofiles", "A-S1")))
    forwarded = seen.json if seen is not None else None
    checks.that(
        f"{what}: forwarded with the body as sent but for response_url",
        isinstance(forwarded, dict)
        and forwarded.get("charging_profile") == SPEC_PROFILE
        and str(forwarded.get("response_url", "")).startswith(world.relay_prefix),
        f"{forwarded}",
    )
    checks.that(
        f"{what}: the library's refusal comes back unchanged",
        seen is not None and (got.status, got.body) == (seen.status, seen.response_body),
        f"hub: {got.status} {got.body[:200]}; library: {seen.status if seen else None}",
    )
    delivered(checks, what, seen, cp1, em1.key, headers)
    answered(checks, what, got.header, em1, cp1.key, headers)
    checks.verify()


# -- last: it changes the world ------------------------------------------------------------------------------------


async def test_a_resumed_party_gets_the_client_info_list_again(world: World, checks: Checks) -> None:
    em2 = world.em2
    others = [m for m in world.members if m is not em2]
    since = await em2.control.mark()
    await world.store.suspend(em2.platform_id, actor=TEST_ACTOR)
    for m in others:
        status = await status_of(m, em2.key, "SUSPENDED")
        checks.equal(f"{m} hears that {em2} is SUSPENDED", status, "SUSPENDED")
    await world.store.resume(em2.platform_id, actor=TEST_ACTOR)
    for m in others:
        status = await status_of(m, em2.key, "CONNECTED")
        checks.equal(f"{m} hears that {em2} is CONNECTED again", status, "CONNECTED")
    wanted = {em2.path("hubclientinfo", f"{m.key[0]}/{m.key[1]}") for m in others}
    got: set[str] = set()
    deadline = asyncio.get_running_loop().time() + ARRIVAL
    while not wanted <= got and asyncio.get_running_loop().time() < deadline:
        got = {r.path for r in await em2.control.received(since) if r.method == "PUT" and r.status is not None}
        await asyncio.sleep(0.05)  # the hub pushes from its scheduler: polled, bounded
    checks.that(
        f"{em2} gets the ClientInfo of every other party again on resume", wanted <= got, f"it got {sorted(got)}"
    )
    checks.verify()


async def status_of(m: Member, party: Party, wanted: str) -> str | None:
    """The status ``m`` holds for ``party`` once it is ``wanted`` (or whatever it holds after the wait)."""
    deadline = asyncio.get_running_loop().time() + ARRIVAL
    while True:
        found = next(
            (
                str(info["status"])
                for info in await m.control.store("clientinfo")
                if (str(info["country_code"]).upper(), str(info["party_id"]).upper()) == party
            ),
            None,
        )
        if found == wanted or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.05)  # the hub pushes from its scheduler: polled, bounded
