"""Open Routing (transport_and_format §4.1.8.4): where a request without ``OCPI-to-*`` goes, decided by what it
addresses; and what directly routed traffic teaches the hub about who owns what.

Owns, per request shape (the spec leaves the choice to the hub, maintainers at ocpi/ocpi #501; digest §2.6):

* ``POST {tokens Sender}/{token_uid}/authorize[?type=]`` → the eMSP owning that token (uid + type);
* ``POST {commands Receiver}/START_SESSION|RESERVE_NOW|UNLOCK_CONNECTOR`` → the CPO owning ``location_id``;
  ``STOP_SESSION`` → the CPO of ``session_id``; ``CANCEL_RESERVATION`` → the CPO that got the reservation;
* a session PUT and a CDR POST (Receiver) → the eMSP named by ``cdr_token.country_code``/``party_id``; a session
  PATCH without ``cdr_token`` → the eMSP that got that session's PUT;
* ``{chargingprofiles Receiver}/{session_id}`` → the CPO of that session;
* ``GET {locations Sender}/{location_id}[/{evse_uid}[/{connector_id}]]`` → the CPO owning the location.

What the owner index learns from routed traffic (facts, written in batches off the hot path): the owner segments
of token, location and session pushes, the eMSP a session was pushed to, and the CPO a RESERVE_NOW went to.
Must not: do I/O (the proxy looks the key up and resolves the owner), or parse a body it does not need.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qsl, unquote

import orjson

from routing.datetimes import parse_datetime
from routing.errors import InvalidParametersError, MalformedBodyError, UnknownReceiverError
from routing.model import InterfaceRole, ModuleID, PartyKey, valid_country_code, valid_party_id
from routing.owners import OwnerFact, OwnerKind, token_key, valid_key

#: mod_tokens §12.2.1: ``type`` defaults to RFID when the URL leaves it out.
DEFAULT_TOKEN_TYPE: Final = "RFID"
#: mod_commands §13.3.1 CommandType → the body field that names what the CPO owns.
_COMMAND_KEYS: Final = {
    "START_SESSION": (OwnerKind.LOCATION, "location_id"),
    "RESERVE_NOW": (OwnerKind.LOCATION, "location_id"),
    "UNLOCK_CONNECTOR": (OwnerKind.LOCATION, "location_id"),
    "STOP_SESSION": (OwnerKind.SESSION_CPO, "session_id"),
    "CANCEL_RESERVATION": (OwnerKind.RESERVATION, "reservation_id"),
}


@dataclass(frozen=True, slots=True)
class Lookup:
    """The destination is whoever the owner index says owns ``key``."""

    kind: OwnerKind
    key: str


@dataclass(frozen=True, slots=True)
class Named:
    """The destination is named in the request itself (a CDR's or session's ``cdr_token``)."""

    party: PartyKey


def _segments(suffix: str) -> list[str]:
    return [unquote(s) for s in suffix.split("/")[1:]] if suffix else []


def _document(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedBodyError("the request body is not valid JSON") from None
    if not isinstance(document, dict):
        raise MalformedBodyError("the request body must be a JSON object")
    return document


def _token_type(query: bytes) -> str:
    for key, value in parse_qsl(query.decode("latin-1")):
        if key == "type" and value:
            return value
    return DEFAULT_TOKEN_TYPE


def _key(value: object, what: str) -> str:
    if not isinstance(value, str) or not valid_key(value):
        raise InvalidParametersError(f"{what} is missing or malformed: the hub cannot tell whom this is for")
    return value


def _cdr_token_party(document: dict[str, Any]) -> PartyKey | None:
    token = document.get("cdr_token")
    if not isinstance(token, dict):
        return None
    country_code, party_id = token.get("country_code"), token.get("party_id")
    if not isinstance(country_code, str) or not isinstance(party_id, str):
        return None
    party = PartyKey(country_code.upper(), party_id.upper())
    return party if valid_country_code(party.country_code) and valid_party_id(party.party_id) else None


def destination(
    module: ModuleID, role: InterfaceRole, method: str, suffix: str, query: bytes, body: bytes
) -> Lookup | Named:
    """Where an open-routed request goes; 4001 when the hub cannot tell (nothing is forwarded)."""
    segments = _segments(suffix)
    if module is ModuleID.TOKENS and role is InterfaceRole.SENDER and method == "POST":
        if len(segments) == 2 and segments[1] == "authorize":
            return Lookup(OwnerKind.TOKEN, token_key(_key(segments[0], "token_uid"), _token_type(query)))
    elif module is ModuleID.COMMANDS and role is InterfaceRole.RECEIVER and method == "POST" and len(segments) == 1:
        found = _COMMAND_KEYS.get(segments[0].upper())
        if found is not None:
            kind, field = found
            return Lookup(kind, _key(_document(body).get(field), field))
    elif module is ModuleID.SESSIONS and role is InterfaceRole.RECEIVER and method in ("PUT", "PATCH"):
        if len(segments) == 3:
            party = _cdr_token_party(_document(body))
            if party is not None:
                return Named(party)
            if method == "PATCH":
                return Lookup(OwnerKind.SESSION_EMSP, _key(segments[2], "session_id"))
            raise InvalidParametersError("a session PUT without OCPI-to-* needs cdr_token.country_code/party_id")
    elif module is ModuleID.CDRS and role is InterfaceRole.RECEIVER and method == "POST" and not segments:
        party = _cdr_token_party(_document(body))
        if party is not None:
            return Named(party)
        raise InvalidParametersError("a CDR POST without OCPI-to-* needs cdr_token.country_code/party_id")
    elif module is ModuleID.CHARGINGPROFILES and role is InterfaceRole.RECEIVER and len(segments) == 1:
        return Lookup(OwnerKind.SESSION_CPO, _key(segments[0], "session_id"))
    elif module is ModuleID.LOCATIONS and role is InterfaceRole.SENDER and method == "GET" and 1 <= len(segments) <= 3:
        return Lookup(OwnerKind.LOCATION, _key(segments[0], "location_id"))
    raise UnknownReceiverError(
        f"the hub cannot tell which party {method} {module.value} {role.value.lower()} is for: send OCPI-to-*"
    )


def learned(
    module: ModuleID,
    role: InterfaceRole,
    method: str,
    suffix: str,
    query: bytes,
    to_party: PartyKey,
    body: bytes,
) -> tuple[OwnerFact, ...]:
    """What a directly routed request teaches the owner index (empty for almost every request)."""
    if role is not InterfaceRole.RECEIVER or method not in ("PUT", "PATCH", "POST"):
        return ()
    segments = _segments(suffix)
    try:
        if module in (ModuleID.TOKENS, ModuleID.LOCATIONS, ModuleID.SESSIONS) and len(segments) >= 3:
            owner = PartyKey(segments[0].upper(), segments[1].upper())
            if not (valid_country_code(owner.country_code) and valid_party_id(owner.party_id)):
                return ()
            if module is ModuleID.TOKENS:
                return (OwnerFact(OwnerKind.TOKEN, token_key(segments[2], _token_type(query)), owner),)
            if module is ModuleID.LOCATIONS:
                return (OwnerFact(OwnerKind.LOCATION, segments[2], owner),)
            return (
                OwnerFact(OwnerKind.SESSION_CPO, segments[2], owner),
                OwnerFact(OwnerKind.SESSION_EMSP, segments[2], to_party),
            )
        if module is ModuleID.COMMANDS and method == "POST" and segments and segments[0].upper() == "RESERVE_NOW":
            document = _document(body)
            reservation = document.get("reservation_id")
            if isinstance(reservation, str):
                return (OwnerFact(OwnerKind.RESERVATION, reservation, to_party, _expiry(document)),)
    except (ValueError, InvalidParametersError):
        return ()  # a malformed id teaches nothing; the receiver answers the request itself
    return ()


def _expiry(document: dict[str, Any]) -> datetime | None:
    expiry = document.get("expiry_date")
    if not isinstance(expiry, str):
        return None
    try:
        return parse_datetime(expiry)
    except ValueError:
        return None
