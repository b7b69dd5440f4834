"""Small builders for the routing unit tests: platforms, snapshots, parsed headers and a decision trail.

Everything is built in memory from routing/ types alone (no registry, no I/O), so a test states the world it needs
in a line or two.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from typing import Final

from routing import headers as h
from routing.model import FUNCTIONAL_MODULES, ConnectionStatus, InterfaceRole, ModuleID, PartyKey, PartyRole
from routing.table import NO_KEYS, Platform, RoutingTable, SigningKeys, token_digest

HUB: Final = PartyKey("ZZ", "HUB")
ROLES: Final = (InterfaceRole.SENDER, InterfaceRole.RECEIVER)
#: Every functional module, both interface roles: what a fully equipped platform publishes.
EVERY_ENDPOINT: Final = tuple((m, r) for m in FUNCTIONAL_MODULES for r in ROLES)


def platform_id(name: str) -> str:
    """A stable 16-hex-digit platform id per name (relay tokens carry ids as 8 raw bytes)."""
    return hashlib.sha256(name.encode()).hexdigest()[:16]


def token_of(name: str) -> str:
    """The token C the platform called ``name`` authenticates to the hub with."""
    return f"token-c-{name}"


def platform(
    name: str,
    roles: Iterable[str],
    *,
    status: ConnectionStatus = ConnectionStatus.CONNECTED,
    endpoints: Iterable[tuple[ModuleID, InterfaceRole]] = EVERY_ENDPOINT,
    origin: str | None = None,
    registered: bool = True,
    rate_limit: tuple[float, int] | None = None,
    tokens: Iterable[str] | None = None,
) -> Platform:
    """A platform with parties ``roles`` (``CC:PID:ROLE``), endpoints at ``{origin}/ocpi/2.2.1/{module}/{role}``."""
    base = origin or f"https://{name}.example.com"
    accepted = [token_of(name)] if tokens is None else list(tokens)
    return Platform(
        id=platform_id(name),
        name=name,
        roles=frozenset(PartyRole.parse(r) for r in roles),
        status=status,
        endpoints={(m, r): f"{base}/ocpi/2.2.1/{m.value}/{r.value.lower()}" for m, r in endpoints},
        auth_header=b"Token " + base64.b64encode(f"token-b-{name}".encode()),
        versions_url=f"{base}/ocpi/versions",
        registered=registered,
        rate_limit=rate_limit,
        digests=tuple(token_digest(t.encode()) for t in accepted),
    )


def table(*platforms: Platform, signing: SigningKeys = NO_KEYS, version: int = 1) -> RoutingTable:
    return RoutingTable.build(version, HUB, {p.id: p for p in platforms}, signing)


def authorization(token: str) -> bytes:
    return b"Token " + base64.b64encode(token.encode())


def request_headers(
    token: str | None,
    *,
    to: PartyKey | None = None,
    sender: PartyKey | None = None,
    extra: Iterable[tuple[bytes, bytes]] = (),
) -> h.RequestHeaders:
    """What the proxy parses from a request with this token (None: no Authorization) and routing parties."""
    raw: list[tuple[bytes, bytes]] = []
    if token is not None:
        raw.append((h.AUTHORIZATION, authorization(token)))
    if to is not None:
        raw += [(h.OCPI_TO_COUNTRY_CODE, to.country_code.encode()), (h.OCPI_TO_PARTY_ID, to.party_id.encode())]
    if sender is not None:
        raw += [
            (h.OCPI_FROM_COUNTRY_CODE, sender.country_code.encode()),
            (h.OCPI_FROM_PARTY_ID, sender.party_id.encode()),
        ]
    raw += extra
    return h.read_request_headers(raw)


def party(text: str) -> PartyKey:
    return PartyKey.parse(text)


class Trail:
    """The proxy's per-request record as routing.decision.Trail sees it."""

    __slots__ = ("from_party", "platform_id", "to_party")

    def __init__(self) -> None:
        self.platform_id = ""
        self.from_party: PartyKey | None = None
        self.to_party: PartyKey | None = None
