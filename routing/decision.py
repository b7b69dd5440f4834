"""The routing decision: from one request's parsed headers to who sent it and where it goes.

Owns: the one sequence every functional-module request and every relay URL runs through, in the order the spec
needs — authenticate first (an unauthenticated caller gets 401 whatever else is wrong, transport_and_format
§4.1.2), then the other headers and the path, then the sender (no impersonation, digest §2.9), then the target:
``Broadcast`` (a push addressed to the hub, §4.1.8.3) or ``Direct`` (a named receiver, §4.1.8.2).
The proxy, the relay path and the micro-benchmark all call these functions; nothing re-implements a step.
Must not: do I/O or read clocks. Who was authenticated and which parties were named is written to the caller's
``Trail`` as the steps pass, so a refusal can still be logged with them.
"""

from __future__ import annotations

from typing import Protocol

from routing.errors import InvalidParametersError, NotFoundError, ReceiverUnreachableError
from routing.headers import RequestHeaders
from routing.model import ConnectionStatus, InterfaceRole, ModuleID, PartyKey
from routing.paths import check_suffix
from routing.relays import RelayGrant
from routing.table import Broadcast, Caller, Direct, RoutingTable


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
) -> Direct | Broadcast:
    """Where one functional-module request goes, or the typed error the hub answers instead."""
    caller = authenticate(table, headers, trail)
    headers.check()
    check_suffix(suffix)
    sender = trail.from_party = table.check_sender(caller, headers.from_party)
    to_party = trail.to_party = headers.to_party
    if to_party == table.hub:
        return table.broadcast(caller, sender, module, role, method, suffix)
    if to_party is None:
        raise InvalidParametersError("OCPI-to-country-code and OCPI-to-party-id are required")
    return table.resolve(caller, sender, to_party, module, role)


def decide_relay(table: RoutingTable, headers: RequestHeaders, grant: RelayGrant | None, trail: Trail) -> Direct:
    """A relay URL being used: only by the platform it was made for, to a platform that is still connected.

    ``grant`` is None when the URL is unknown, expired or forged: one 404 for all of them, after authentication,
    so a relay URL reveals nothing to anyone else.
    """
    caller = authenticate(table, headers, trail)
    headers.check()
    table.admit(caller)
    sender = headers.from_party
    if sender is not None:
        trail.from_party = table.check_sender(caller, sender)
    if grant is None or grant.allowed_id != caller.platform.id:
        raise NotFoundError("unknown or expired relay URL")
    target = table.platforms.get(grant.platform_id)
    if target is None or target.status is not ConnectionStatus.CONNECTED:
        raise ReceiverUnreachableError("the party behind this URL is not connected")
    # The original exchange's routing parties, for a client that does not repeat them on a followed URL.
    to_party = trail.to_party = headers.to_party or grant.to_party
    add_from = sender is None and headers.to_party is None and grant.from_party is not None
    if add_from:
        sender = trail.from_party = grant.from_party
    add_to = headers.to_party is None and to_party is not None
    return Direct(caller, sender, to_party, target, grant.target, add_to=add_to, add_from=add_from)
