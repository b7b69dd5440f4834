"""Micro-benchmark of the per-request routing decision alone, in decisions per second.

Measures: the exact calls ``hub/proxy.py`` makes for a routed request before it forwards —
``routing.headers.read_request_headers`` → ``routing.decision.decide`` (authenticate, check the headers and the
path, check the sender, the "addressed to the hub?" test, resolve) → ``hub.proxy.outbound_headers`` with a new
X-Request-ID from ``hub.ids.new_request_id`` → ``join_url``. Nothing here re-implements a step.

How: a synthetic registry of 1,000 platforms (one party each, 12 endpoints, a token C digest each) goes through
``registry.snapshot.build_batch`` and ``RoutingTable.build`` as a reload would; requests are realistic ASGI
header lists (lowercase byte
names, ``Token <base64>``, OCPI-from/to, X-Request-ID, X-Correlation-ID, content-type, accept, host,
user-agent, content-length) of a CPO PUTting a session to an eMSP, each from a different sender. Figures are
the best of several repeats of ``time.perf_counter_ns`` around many iterations, with GC left on.

- warm: the table's caller cache already holds every Authorization value (the steady state).
- cold: a fresh ``RoutingTable`` per batch (tables built before the clock starts), so every decision decodes
  Base64 and hashes with SHA-256 before the cache is filled.
- steps: each step alone on precomputed inputs, in µs, with the bare loop overhead subtracted.

Also the pagination Link rewrite a paginated GET adds (issue "Paginated lists at full speed"): µs per
``hub.relay.Relays.link`` on a receiver's usable next-page Link (a signed relay URL: HMAC-SHA256, nothing
stored) — a crawl's next page (its signed part made already in this expiry step) and a list's first Link (signed
afresh) — and per ``Relays.missing_link`` on a last page that carries X-Total-Count but no Link, for an answer of
10 small Locations (benchmarks/stub_party.py), best of several repeats. The store it is given is never used.

Also checks that the decision path does no I/O: one cold and one warm pass run under a ``sys.audit`` hook and
a ``sys.setprofile`` hook that sees every C call (so a write on an already-open socket is caught too). Any
file, socket, select or subprocess call raises ``RuntimeError``; ``os.urandom`` (a getrandom(2) syscall, not
I/O) is allowed and counted. The audit hook cannot be removed once added, so it does nothing outside the check.

The synthetic registry builders here are shared with ``benchmarks/scale.py``.
Run: ``python -m benchmarks.micro [--smoke]``.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import json
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Final

import orjson
from redis.asyncio import Redis

from benchmarks.stub_party import small_location
from hub import logs
from hub.ids import new_request_id
from hub.proxy import outbound_headers
from hub.relay import Relays
from registry.codec import EndpointRecord, PlatformRecord, encode_platform
from registry.keys import RegistryKeys
from registry.snapshot import build_batch
from registry.store import PartyStore
from routing import decision
from routing.datetimes import format_datetime
from routing.headers import AUTHORIZATION, X_REQUEST_ID, RequestHeaders, parse_authorization, read_request_headers
from routing.model import ConnectionStatus, InterfaceRole, ModuleID, PartyKey, PartyRole, Role, TokenForm
from routing.paths import join_url
from routing.table import Caller, Direct, Platform, RoutingTable, SigningKeys, token_digest

HUB: Final = PartyKey("ZZ", "HUB")
PLATFORMS: Final = 1_000
#: The request every decision is for: a CPO PUTs a session into an eMSP's Sessions receiver interface.
MODULE: Final = ModuleID.SESSIONS
ROLE: Final = InterfaceRole.RECEIVER
QUERY: Final = b""

#: 12 endpoints per platform: credentials plus both interfaces of five modules and the Commands receiver.
ENDPOINTS: Final = (
    ("credentials", "SENDER"),
    *((m, r) for m in ("locations", "tariffs", "tokens", "sessions", "cdrs") for r in ("SENDER", "RECEIVER")),
    ("commands", "RECEIVER"),
)
_LETTERS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXY"  # no Z: ZZ is the hub, ZY the party scale.py declares
_ALNUM: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# -- synthetic registry ------------------------------------------------------------------------------------------


def party_of(index: int) -> PartyKey:
    """A distinct valid party for every index below 25^2 * 36^3 (about 29 million)."""
    cc = _LETTERS[index % 25] + _LETTERS[(index // 25) % 25]
    rest = index // 625
    pid = _ALNUM[rest // 1296 % 36] + _ALNUM[rest // 36 % 36] + _ALNUM[rest % 36]
    return PartyKey(cc, pid)


def role_of(index: int) -> Role:
    return Role.CPO if index % 2 == 0 else Role.EMSP


def _token(rng: random.Random) -> str:
    # The shape of registry.store.new_token: 43 URL-safe characters, 256 bits.
    return base64.urlsafe_b64encode(rng.randbytes(32)).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class SyntheticRegistry:
    """Records as Redis would hold them, and the token C each platform authenticates to the hub with."""

    records: tuple[PlatformRecord, ...]
    tokens: tuple[str, ...]
    #: The records as Redis holds them (what a reload reads).
    raws: tuple[bytes, ...]

    def platforms(self) -> dict[str, Platform]:
        """The routing platforms, built by the production reload path."""
        return build_batch(list(self.raws))


def synthetic_registry(size: int, seed: int = 2_2_1) -> SyntheticRegistry:
    """``size`` registered, CONNECTED platforms, one party each (CPO and eMSP alternating)."""
    rng = random.Random(seed)
    now = format_datetime(datetime.now(UTC))
    records: list[PlatformRecord] = []
    tokens: list[str] = []
    for index in range(size):
        token_c = _token(rng)
        digest = hashlib.sha256(token_c.encode()).hexdigest()
        platform_id = rng.randbytes(8).hex()
        party = party_of(index)
        base = f"https://ocpi.p{index:06d}.example.com/ocpi"
        record = PlatformRecord(
            id=platform_id,
            name=f"Party {party}",
            roles=(PartyRole(party, role_of(index)),),
            status=ConnectionStatus.CONNECTED,
            registered=True,
            created=now,
            status_since=now,
            versions_url=f"{base}/versions",
            version="2.2.1",
            endpoints=tuple(EndpointRecord(m, r, f"{base}/2.2.1/{m}/{r.lower()}") for m, r in ENDPOINTS),
            token_b=_token(rng),
            token_form=TokenForm.BASE64,
            accept_digests=(digest,),
            business_details={"name": f"Party {party}", "website": f"https://p{index:06d}.example.com"},
        )
        records.append(record)
        tokens.append(token_c)
    return SyntheticRegistry(tuple(records), tuple(tokens), tuple(encode_platform(r) for r in records))


def authorization(token: str) -> bytes:
    return b"Token " + base64.b64encode(token.encode())


def request_headers(
    registry: SyntheticRegistry, sender: int, receiver: int, rng: random.Random
) -> list[tuple[bytes, bytes]]:
    """One realistic ASGI header list, as uvicorn hands it over (lowercase names, arrival order)."""
    source, target = registry.records[sender].roles[0].party, registry.records[receiver].roles[0].party
    return [
        (b"host", b"hub.example.com"),
        (b"user-agent", b"ocpi-client/2.2.1 python-httpx/0.27.0"),
        (b"accept", b"application/json"),
        (b"content-type", b"application/json"),
        (b"content-length", b"1532"),
        (b"authorization", authorization(registry.tokens[sender])),
        (b"x-request-id", _uuid(rng)),
        (b"x-correlation-id", _uuid(rng)),
        (b"ocpi-from-country-code", source.country_code.encode()),
        (b"ocpi-from-party-id", source.party_id.encode()),
        (b"ocpi-to-country-code", target.country_code.encode()),
        (b"ocpi-to-party-id", target.party_id.encode()),
    ]


def _uuid(rng: random.Random) -> bytes:
    text = rng.randbytes(16).hex()
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-a{text[17:20]}-{text[20:]}".encode()


def suffix_for(sender: PartyKey, index: int) -> str:
    return f"/{sender.country_code}/{sender.party_id}/SES{index:06d}"


# -- the decision --------------------------------------------------------------------------------------------


class Trail:
    """What the proxy's per-request record keeps of a decision (``routing.decision.Trail``)."""

    __slots__ = ("from_party", "platform_id", "to_party")

    def __init__(self) -> None:
        self.platform_id = ""
        self.from_party: PartyKey | None = None
        self.to_party: PartyKey | None = None


def decide(
    table: RoutingTable, raw: Sequence[tuple[bytes, bytes]], suffix: str
) -> tuple[list[tuple[bytes, bytes]], str]:
    """What Proxy.module_request does before forwarding, with the proxy's own functions."""
    parsed = read_request_headers(raw)
    route = decision.decide(table, parsed, MODULE, ROLE, "PUT", suffix, Trail())
    if not isinstance(route, Direct):
        raise RuntimeError("a benchmark request was addressed to the hub")
    out = outbound_headers(parsed, route, new_request_id(), new_request_id())
    return out, join_url(route.endpoint, suffix, QUERY)


def fresh_table(table: RoutingTable) -> RoutingTable:
    """The same snapshot with an empty caller cache, as after a reload."""
    return RoutingTable.build(table.version, table.hub, dict(table.platforms))


# -- timing --------------------------------------------------------------------------------------------------


def best_ns(loop: Callable[[], object], repeats: int) -> int:
    """Best wall time of ``loop()`` over ``repeats`` runs, in ns (GC collected before, enabled during)."""
    best = sys.maxsize
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter_ns()
        loop()
        best = min(best, time.perf_counter_ns() - started)
    return best


def _rate(ns_per_decision: float) -> dict[str, float]:
    return {"decisions_per_s": round(1e9 / ns_per_decision), "us_per_decision": round(ns_per_decision / 1e3, 3)}


@dataclass(frozen=True, slots=True)
class Workload:
    table: RoutingTable
    raws: list[list[tuple[bytes, bytes]]]
    suffixes: list[str]


def workload(registry: SyntheticRegistry, batch: int, seed: int = 7) -> Workload:
    """``batch`` requests, each from a different CPO to a random eMSP."""
    rng = random.Random(seed)
    cpos = [i for i in range(len(registry.records)) if role_of(i) is Role.CPO]
    emsps = [i for i in range(len(registry.records)) if role_of(i) is Role.EMSP]
    senders = rng.sample(cpos, min(batch, len(cpos)))
    raws = [request_headers(registry, s, rng.choice(emsps), rng) for s in senders]
    suffixes = [suffix_for(registry.records[s].roles[0].party, n) for n, s in enumerate(senders)]
    return Workload(RoutingTable.build(1, HUB, registry.platforms()), raws, suffixes)


def measure_decisions(work: Workload, rounds: int, repeats: int) -> dict[str, dict[str, float]]:
    pairs = list(zip(work.raws, work.suffixes, strict=True))
    warm = fresh_table(work.table)
    for raw, suffix in pairs:
        decide(warm, raw, suffix)

    def warm_loop() -> None:
        for _ in range(rounds):
            for raw, suffix in pairs:
                decide(warm, raw, suffix)

    warm_ns = best_ns(warm_loop, repeats) / (rounds * len(pairs))
    cold_best = sys.maxsize
    for _ in range(repeats):
        tables = [fresh_table(work.table) for _ in range(rounds)]
        gc.collect()
        started = time.perf_counter_ns()
        for table in tables:
            for raw, suffix in pairs:
                decide(table, raw, suffix)
        cold_best = min(cold_best, time.perf_counter_ns() - started)
    cold_ns = cold_best / (rounds * len(pairs))
    return {"warm": _rate(warm_ns), "cold": _rate(cold_ns)}


def measure_steps(work: Workload, rounds: int, repeats: int) -> dict[str, float]:
    """µs per step, each on precomputed inputs; the bare ``for`` loop overhead is subtracted."""
    table = fresh_table(work.table)
    raws = work.raws
    parsed: list[RequestHeaders] = [read_request_headers(r) for r in raws]
    auths: list[bytes] = [p.authorization or b"" for p in parsed]
    callers: list[Caller] = [table.authenticate_header(a) for a in auths]
    senders = [(c, p.from_party) for c, p in zip(callers, parsed, strict=True)]
    to_parties = [p.to_party for p in parsed]
    resolvable = [(c, f, t) for (c, f), t in zip(senders, to_parties, strict=True) if f is not None and t is not None]
    routes: list[Direct] = [table.resolve(c, f, t, MODULE, ROLE) for c, f, t in resolvable]
    outs = [(p.passthrough, r.receiver.auth_header) for p, r in zip(parsed, routes, strict=True)]
    joins = [(r.endpoint, s) for r, s in zip(routes, work.suffixes, strict=True)]
    tokens = [parse_authorization(a).decoded or b"" for a in auths]
    hub = table.hub
    n = rounds * len(raws)

    def per_item(loop: Callable[[], object]) -> float:
        return best_ns(loop, repeats) / n

    def bare() -> None:
        for _ in range(rounds):
            for _item in raws:
                pass

    def parse() -> None:
        for _ in range(rounds):
            for raw in raws:
                read_request_headers(raw)

    def auth_warm() -> None:
        for _ in range(rounds):
            for value in auths:
                table.authenticate_header(value)

    def parse_auth() -> None:
        for _ in range(rounds):
            for value in auths:
                parse_authorization(value)

    def digest() -> None:
        for _ in range(rounds):
            for token in tokens:
                token_digest(token)

    def auth_uncached() -> None:
        for _ in range(rounds):
            for value in auths:
                table.authenticate(parse_authorization(value))

    def check() -> None:
        for _ in range(rounds):
            for caller, party in senders:
                table.check_sender(caller, party)

    def hub_test() -> None:
        for _ in range(rounds):
            for party in to_parties:
                _ = party == hub

    def resolve() -> None:
        for _ in range(rounds):
            for caller, sender, party in resolvable:
                table.resolve(caller, sender, party, MODULE, ROLE)

    def request_id() -> None:
        for _ in range(rounds):
            for _item in raws:
                new_request_id()

    def outbound() -> None:
        for _ in range(rounds):
            for passthrough, auth in outs:
                _ = [*passthrough, (AUTHORIZATION, auth), (X_REQUEST_ID, new_request_id())]

    def join() -> None:
        for _ in range(rounds):
            for endpoint, suffix in joins:
                join_url(endpoint, suffix, QUERY)

    overhead = per_item(bare)
    steps = {
        "read_request_headers": parse,
        "authenticate_header_warm": auth_warm,
        "authenticate_uncached": auth_uncached,
        "  parse_authorization": parse_auth,
        "  token_digest_sha256": digest,
        "check_sender": check,
        "to_party_is_hub": hub_test,
        "resolve": resolve,
        "outbound_headers": outbound,
        "  new_request_id": request_id,
        "join_url": join,
    }
    result = {name.strip(): round(max(per_item(loop) - overhead, 0.0) / 1e3, 3) for name, loop in steps.items()}
    result["loop_overhead_subtracted"] = round(overhead / 1e3, 3)
    return result


# -- the pagination Link rewrite ---------------------------------------------------------------------------------

#: A page as the stub party answers it: 10 small Locations, 10,000 in all.
_PAGE_ITEMS: Final = 10
_PAGE_TOTAL: Final = 10_000


def measure_relay_link(work: Workload, rounds: int, repeats: int) -> dict[str, float]:
    """µs per ``Relays.link`` (a usable next-page Link) and per ``Relays.missing_link`` (a last page, no Link)."""
    table = RoutingTable.build(2, HUB, dict(work.table.platforms), SigningKeys(1, {1: bytes(range(32))}))
    # Never used: the legacy relay read is the only I/O in Relays, and only reading a relay URL does it.
    store = PartyStore(Redis(), RegistryKeys())
    relays = Relays(lambda: table, store, "https://hub.example.com", link_ttl=900, callback_ttl=172_800)
    parsed = read_request_headers(work.raws[0])
    caller = table.authenticate_header(parsed.authorization)
    sender, to_party = parsed.from_party, parsed.to_party
    if sender is None or to_party is None:
        raise RuntimeError("a benchmark request names no parties")
    route = table.resolve(caller, sender, to_party, ModuleID.LOCATIONS, InterfaceRole.SENDER)
    limit = f"limit={_PAGE_ITEMS}"
    link = f'<{route.endpoint}?offset={_PAGE_ITEMS}&{limit}>; rel="next"'.encode()
    body = orjson.dumps({"data": [small_location(i) for i in range(_PAGE_ITEMS)], "status_code": 1000})
    first, last = f"offset=0&{limit}".encode(), f"offset={_PAGE_TOTAL - _PAGE_ITEMS}&{limit}".encode()
    if relays.link(link, route, ModuleID.LOCATIONS, InterfaceRole.SENDER, first, _PAGE_TOTAL, body) is None:
        raise RuntimeError("Relays.link made no relay URL")

    def rewrite() -> None:
        for _ in range(rounds):
            relays.link(link, route, ModuleID.LOCATIONS, InterfaceRole.SENDER, first, _PAGE_TOTAL, body)

    # A list's first Link in an expiry step is signed; the next pages of the crawl reuse that (hub/relay.py).
    # Every call times lists never seen before (each repeat its own), so none is found signed already.
    lists = min(rounds, 5_000)
    fresh = iter(
        [
            [
                f'<{route.endpoint}/list{i}?offset={_PAGE_ITEMS}&{limit}>; rel="next"'.encode()
                for i in range(k, k + lists)
            ]
            for k in range(0, lists * repeats, lists)
        ]
    )

    def rewrite_first() -> None:
        for value in next(fresh):
            relays.link(value, route, ModuleID.LOCATIONS, InterfaceRole.SENDER, first, _PAGE_TOTAL, body)

    def last_page() -> None:
        for _ in range(rounds):
            relays.missing_link(route, ModuleID.LOCATIONS, InterfaceRole.SENDER, last, _PAGE_TOTAL, body)

    return {
        "relay_link_us": round(best_ns(rewrite, repeats) / rounds / 1e3, 3),
        "relay_link_first_of_list_us": round(best_ns(rewrite_first, repeats) / lists / 1e3, 3),
        "missing_link_last_page_us": round(best_ns(last_page, repeats) / rounds / 1e3, 3),
        "page_body_bytes": len(body),
    }


# -- the request log line ------------------------------------------------------------------------------------------


def measure_log_line(rounds: int, repeats: int) -> dict[str, float]:
    """µs per request log line (``hub.logs.event`` with a routed GET's fields, through the hub's batching handler to
    /dev/null): every request pays it."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    handler = logs.BatchingHandler(devnull)
    root = logging.getLogger()
    kept = root.handlers[:], root.level
    root.handlers[:] = [handler]  # the hub's own set-up: the line goes straight to the batch
    root.setLevel(logging.INFO)
    logger = logging.getLogger("ocpihub.access")
    sender, receiver = PartyKey("BE", "EMP"), PartyKey("NL", "CPO")

    def lines() -> None:
        for _ in range(rounds):
            logs.event(
                logger,
                "routed",
                {
                    "event": "request",
                    "kind": "request",
                    "correlation_id": "bench-correlation",
                    "request_id": "bench-request",
                    "request_id_out": "0f6a6f2c-3c0c-4a47-a0a6-4d3b1c2a9e1f",
                    "from": str(sender),
                    "to": str(receiver),
                    "platform": "platform-1",
                    "client": "127.0.0.1",
                    "module": "locations",
                    "interface": "sender",
                    "method": "GET",
                    "path": "/ocpi/2.2.1/sender/locations?offset=&limit=",
                    "status": 200,
                    "ocpi_status": None,
                    "outcome": "ok",
                    "latency_ms": 0.412,
                },
            )

    try:
        return {"log_line_us": round(best_ns(lines, repeats) / rounds / 1e3, 3)}
    finally:
        handler.flush()
        root.handlers[:], level = kept
        root.setLevel(level)
        os.close(devnull)


# -- no I/O on the decision path -----------------------------------------------------------------------------

#: Audit events (PEP 578) that mean I/O or process control.
_IO_EVENT_PREFIXES: Final = (
    "open",
    "socket.",
    "os.",
    "subprocess.",
    "http.",
    "urllib.",
    "ssl.",
    "select.",
    "mmap.",
    "shutil.",
    "sqlite3.",
    "ftplib.",
    "smtplib.",
    "poplib.",
    "imaplib.",
    "nntplib.",
    "telnetlib.",
    "fcntl.",
    "pty.",
    "msvcrt.",
    "ctypes.",
)
#: Modules whose C functions (or whose objects' C methods) do I/O.
_IO_MODULES: Final = frozenset(
    {
        "_socket",
        "socket",
        "_ssl",
        "ssl",
        "select",
        "selectors",
        "_io",
        "io",
        "posix",
        "os",
        "fcntl",
        "mmap",
        "_posixsubprocess",
    }
)
#: Allowed: a getrandom(2) for the new X-Request-ID, which reads no file and opens nothing.
_NOT_IO: Final = frozenset({"posix.urandom"})
_CLOCK: Final = frozenset({"time.time", "time.monotonic", "time.perf_counter", "time.time_ns", "time.monotonic_ns"})


class _IoWatch:
    def __init__(self) -> None:
        self.active = False
        self.events: list[str] = []
        self.io_calls: list[str] = []
        self.allowed: list[str] = []
        self.clock_reads = 0

    def reset(self) -> None:
        self.events, self.io_calls, self.allowed, self.clock_reads = [], [], [], 0

    def audit(self, event: str, _args: tuple[object, ...]) -> None:
        if self.active and event != "sys.setprofile":  # our own hook going on and off
            self.events.append(event)

    def profile(self, _frame: FrameType, event: str, arg: object) -> None:
        if event != "c_call":
            return
        module = getattr(arg, "__module__", None)
        owner = getattr(arg, "__self__", None)
        if module is None and owner is not None:
            module = type(owner).__module__
        name = f"{module}.{getattr(arg, '__name__', '?')}"
        if name in _NOT_IO:
            self.allowed.append(name)
        elif name in _CLOCK:
            self.clock_reads += 1
        elif module in _IO_MODULES:
            self.io_calls.append(name)


_WATCH: Final = _IoWatch()
_hooked = False


def check_no_io(work: Workload) -> dict[str, object]:
    """One cold and one warm pass under audit and profile hooks; RuntimeError on any I/O."""
    global _hooked
    if not _hooked:
        sys.addaudithook(_WATCH.audit)
        _hooked = True
    _WATCH.reset()
    table = fresh_table(work.table)
    pairs = list(zip(work.raws, work.suffixes, strict=True))
    _WATCH.active = True
    sys.setprofile(_WATCH.profile)
    try:
        for _ in range(2):  # first pass cold, second warm
            for raw, suffix in pairs:
                decide(table, raw, suffix)
    finally:
        sys.setprofile(None)
        _WATCH.active = False
    decisions = 2 * len(pairs)
    io_events = [e for e in _WATCH.events if e.startswith(_IO_EVENT_PREFIXES)]
    if io_events or _WATCH.io_calls:
        raise RuntimeError(
            f"the routing decision did I/O: audit {sorted(set(io_events))}, calls {sorted(set(_WATCH.io_calls))}"
        )
    return {
        "io_calls_per_decision": 0,
        "audit_events_per_decision": round(len(_WATCH.events) / decisions, 3),
        "clock_reads_per_decision": round(_WATCH.clock_reads / decisions, 3),
        "getrandom_per_decision": round(len(_WATCH.allowed) / decisions, 3),
    }


# -- entry point ---------------------------------------------------------------------------------------------


def run(smoke: bool = False) -> dict[str, object]:
    """Decisions/s warm and cold, µs per step, and the no-I/O check."""
    batch = 200 if smoke else 500
    rounds = 5 if smoke else 40
    repeats = 5 if smoke else 7
    started = time.perf_counter()
    registry = synthetic_registry(PLATFORMS)
    work = workload(registry, batch)
    decisions = measure_decisions(work, rounds, repeats)
    steps = measure_steps(work, rounds, repeats)
    links = measure_relay_link(work, rounds * 100, repeats)
    log_line = measure_log_line(rounds * 100, repeats)
    io = check_no_io(work)
    return {
        "benchmark": "micro",
        "smoke": smoke,
        "platforms": PLATFORMS,
        "tokens": len(work.table.tokens),
        "distinct_senders_per_batch": len(work.raws),
        "decisions_per_repeat": rounds * len(work.raws),
        "repeats": repeats,
        "request": f"PUT /ocpi/2.2.1/{ROLE.value.lower()}/{MODULE.value}/CC/PID/SESxxxxxx, {len(work.raws[0])} headers",
        **decisions,
        "steps_us": steps,
        "pagination_link": links,
        "request_log": log_line,
        **io,
        "python": sys.version.split()[0],
        "wall_s": round(time.perf_counter() - started, 2),
    }


if __name__ == "__main__":
    print(json.dumps(run(smoke="--smoke" in sys.argv[1:]), indent=2))
