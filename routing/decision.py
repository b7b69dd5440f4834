"""The routing decision: from one request's parsed headers to who sent it and where it goes.

Owns: the one sequence every functional-module request and every relay URL runs through, in the order the spec
needs — authenticate first (an unauthenticated caller gets 401 whatever else is wrong, transport_and_format
§4.1.2), then the other headers and the path, then the sender (no impersonation, digest §2.9; inferred when the
platform holds one party and the header is missing), then the target: ``Direct`` (a named receiver, §4.1.8.2),
``Broadcast`` (a push addressed to the hub, §4.1.8.3, or a push of the sender's own broadcastable objects with no
``OCPI-to-*``, which §4.1.8.4 lets the hub broadcast), ``GetAll``/``StoreGet`` (a GET addressed to the hub, served
from its store of broadcast data, §4.1.8.5) or ``OpenRoute`` (no ``OCPI-to-*``: the hub finds the receiver,
routing/openroute.py).
The proxy, the relay path and the micro-benchmark all call these functions; nothing re-implements a step.
Must not: do I/O or read clocks. Who was authenticated and which parties were named is written to the caller's
``Trail`` as the steps pass, so a refusal can still be logged with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from routing.errors import InvalidParametersError, NotFoundError, ReceiverUnreachableError
from routing.headers import RequestHeaders
from routing.model import ConnectionStatus, InterfaceRole, ModuleID, PartyKey
from routing.paths import check_suffix
from routing.relays import RelayGrant
from routing.table import (
    BROADCAST_AUDIENCE,
    BROADCAST_DELETE,
    BROADCAST_METHODS,
    BROADCAST_MODULES,
    BROADCAST_OWNERS,
    Broadcast,
    Caller,
    Direct,
    RoutingTable,
)

#: Who may GET All via Hub (§4.1.8.5): the parties a module's broadcasts go to (an eMSP gets locations and
#: tariffs, a CPO gets tokens; NSP and OTHER count as eMSP-like, §4.1.8.3).
GET_ALL_AUDIENCE: Final = {
    module: frozenset().union(*(BROADCAST_AUDIENCE.get(owner, frozenset()) for owner in owners))
    for module, owners in BROADCAST_OWNERS.items()
}


@dataclass(frozen=True, slots=True)
class GetAll:
    """A list GET on a Sender interface addressed to the hub: served from its store (§4.1.8.5, §4.1.8.7)."""

    caller: Caller
    sender: PartyKey
    module: ModuleID


@dataclass(frozen=True, slots=True)
class StoreGet:
    """A single-object GET addressed to the hub, naming the owner (``/{cc}/{pid}/{id}...``): from the store."""

    caller: Caller
    sender: PartyKey
    module: ModuleID
    suffix: str


@dataclass(frozen=True, slots=True)
class OpenRoute:
    """No ``OCPI-to-*``: the proxy finds the receiver by what the request addresses (routing/openroute.py)."""

    caller: Caller
    sender: PartyKey
    #: The hub adds OCPI-from for a platform that sent none (it holds one party).
    add_from: bool


Decision = Direct | Broadcast | GetAll | StoreGet | OpenRoute


class Trail(Protocol):
    """Where a decision notes what it learnt, step by step (the proxy's per-request record)."""

    platform_id: str
    from_party: PartyKey | None
    to_party: PartyKey | None


def authenticate(table: RoutingTable, headers: RequestHeaders, trail: Trail) -> Caller:
    """The caller behind the Authorization header (HTTP 401 when unknown), before anything else is looked at."""
    caller = table.authenticate_header(headers.authorization)
    trail.platform_id = caller.platform.id
    return caller


def decide(
    table: RoutingTable,
    headers: RequestHeaders,
    module: ModuleID,
    role: InterfaceRole,
    method: str,
    suffix: str,
    trail: Trail,
) -> Decision:
    """Where one functional-module request goes, or the typed error the hub answers instead."""
    caller = authenticate(table, headers, trail)
    table.admit(caller)  # token A (401) and suspension (403) before any complaint about the request itself
    headers.check()
    check_suffix(suffix)
    sender = trail.from_party = table.check_sender(caller, headers.from_party)
    to_party = trail.to_party = headers.to_party
    if to_party == table.hub:
        if method == "GET":
            return _from_store(caller, sender, module, role, suffix)
        return table.broadcast(caller, sender, module, role, method, suffix)
    if to_party is None:
        if _own_push(module, role, method, suffix, sender):
            return table.broadcast(caller, sender, module, role, method, suffix)
        return OpenRoute(caller, sender, add_from=headers.from_party is None)
    route = table.resolve(caller, sender, to_party, module, role)
    if headers.from_party is None:
        return Direct(caller, sender, to_party, route.receiver, route.endpoint, add_from=True)
    return route


def _from_store(caller: Caller, sender: PartyKey, module: ModuleID, role: InterfaceRole, suffix: str) -> Decision:
    """A GET addressed to the hub: only of what the hub stores, only by those its broadcasts go to."""
    audience = GET_ALL_AUDIENCE.get(module)
    if audience is None:
        raise InvalidParametersError(
            f"the hub keeps no {module.value}: only locations, tariffs and tokens (what is broadcast) are served "
            "by the hub itself"
        )
    roles = {r.role for r in caller.platform.roles if r.party == sender}
    if not roles & audience:
        wanted = ", ".join(sorted(r.value for r in audience))
        raise InvalidParametersError(f"GET of {module.value} from the hub is for parties of role {wanted}")
    owned = len(suffix.split("/")) >= 4  # "/{cc}/{pid}/{id}..."
    if owned:
        return StoreGet(caller, sender, module, suffix)
    if role is InterfaceRole.SENDER and not suffix:
        return GetAll(caller, sender, module)
    raise InvalidParametersError(
        "GET addressed to the hub: a list on a Sender interface, or one object named /{country_code}/{party_id}/{id}"
    )


def _own_push(module: ModuleID, role: InterfaceRole, method: str, suffix: str, sender: PartyKey) -> bool:
    """A push of the sender's own broadcastable objects: with no receiver named, the hub broadcasts it."""
    if module not in BROADCAST_MODULES or role is not InterfaceRole.RECEIVER:
        return False
    if method not in BROADCAST_METHODS and not (method == "DELETE" and module in BROADCAST_DELETE):
        return False
    segments = suffix.split("/")
    return len(segments) >= 4 and PartyKey(segments[1].upper(), segments[2].upper()) == sender


def decide_relay(table: RoutingTable, headers: RequestHeaders, grant: RelayGrant | None, trail: Trail) -> Direct:
    """A relay URL being used: only by the platform it was made for, to a platform that is still connected.

    ``grant`` is None when the URL is unknown, expired or forged: one 404 for all of them, after authentication,
    so a relay URL reveals nothing to anyone else.
    """
    caller = authenticate(table, headers, trail)
    table.admit(caller)
    headers.check()
    if headers.from_party is not None:
        trail.from_party = table.check_sender(caller, headers.from_party)
    if grant is None or grant.allowed_id != caller.platform.id:
        raise NotFoundError("unknown or expired relay URL")
    target = table.platforms.get(grant.platform_id)
    if target is None or target.status is not ConnectionStatus.CONNECTED:
        raise ReceiverUnreachableError("the party behind this URL is not connected")
    # The original exchange's routing parties, for a client that does not repeat them on a followed URL; a
    # platform with one party is that party (as for any request without OCPI-from-*).
    to_party = trail.to_party = headers.to_party or grant.to_party
    sender = trail.from_party
    if sender is None:
        if grant.from_party is not None and grant.from_party in caller.platform.parties:
            sender = grant.from_party
        elif len(caller.platform.parties) == 1:
            sender = next(iter(caller.platform.parties))
        trail.from_party = sender
    add_to = headers.to_party is None and to_party is not None
    add_from = headers.from_party is None and sender is not None
    return Direct(caller, sender, to_party, target, grant.target, add_to=add_to, add_from=add_from)
