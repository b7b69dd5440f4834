"""OCPI request headers: names as lowercase byte constants, and the one-pass parser of an ASGI header list.

Owns: which headers the hub reads, how their values are validated (printable ASCII, bounded length, CiString
routing ids upper-cased once) and how ``Authorization: Token ...`` is decoded (transport_and_format §4.1.2).
Must not: do I/O, look anything up, or decode headers the hub does not read.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from routing.errors import InvalidParametersError, UnauthorizedError
from routing.model import PartyKey, valid_country_code, valid_party_id

AUTHORIZATION: Final = b"authorization"
X_REQUEST_ID: Final = b"x-request-id"
X_CORRELATION_ID: Final = b"x-correlation-id"
OCPI_TO_COUNTRY_CODE: Final = b"ocpi-to-country-code"
OCPI_TO_PARTY_ID: Final = b"ocpi-to-party-id"
OCPI_FROM_COUNTRY_CODE: Final = b"ocpi-from-country-code"
OCPI_FROM_PARTY_ID: Final = b"ocpi-from-party-id"
CONTENT_TYPE: Final = b"content-type"
ACCEPT: Final = b"accept"
CONTENT_LENGTH: Final = b"content-length"
TRANSFER_ENCODING: Final = b"transfer-encoding"
LINK: Final = b"link"
LOCATION: Final = b"location"
X_TOTAL_COUNT: Final = b"x-total-count"
X_LIMIT: Final = b"x-limit"
HOST: Final = b"host"

#: Request headers never passed on to a receiver: hop-by-hop ones (RFC 9110 §7.6.1) and the ones the hub
#: rewrites itself (Authorization, X-Request-ID; transport_and_format §4.2) or the client library sets.
NOT_FORWARDED: Final = frozenset(
    {
        AUTHORIZATION,
        X_REQUEST_ID,
        HOST,
        CONTENT_LENGTH,
        TRANSFER_ENCODING,
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"upgrade",
        b"expect",
    }
)

#: Longest X-Request-ID / X-Correlation-ID accepted (the spec advises UUIDs, 36 characters).
MAX_ID_LENGTH: Final = 255
#: Longest Authorization value accepted: "Token " + base64 of a string(64) token, with room to spare.
MAX_AUTHORIZATION_LENGTH: Final = 512

_TOKEN_SCHEME: Final = b"token "

#: Header bytes → PartyKey for routing ids already seen valid (pure: the same bytes always parse the same).
_PARTIES: dict[tuple[bytes, bytes], PartyKey] = {}
MAX_CACHED_PARTIES: Final = 65_536


_PRINTABLE_ASCII: Final = bytes(range(0x20, 0x7F))


def _printable(value: bytes) -> bool:
    # OCPI strings are printable; CR, LF, TAB and non-ASCII bytes never belong in these headers (types §16.1).
    return not value.translate(None, _PRINTABLE_ASCII)


def _party(cc: bytes | None, pid: bytes | None, direction: str) -> PartyKey | None:
    if cc is None and pid is None:
        return None
    if cc is None or pid is None:
        raise InvalidParametersError(f"OCPI-{direction}-country-code and OCPI-{direction}-party-id come in pairs")
    cached = _PARTIES.get((cc, pid))
    if cached is not None:
        return cached
    if not (_printable(cc) and _printable(pid)):
        raise InvalidParametersError(f"OCPI-{direction}-* headers must be printable ASCII")
    country_code = cc.decode("ascii").strip().upper()
    party_id = pid.decode("ascii").strip().upper()
    if not valid_country_code(country_code) or not valid_party_id(party_id):
        raise InvalidParametersError(
            f"OCPI-{direction}-* must be a CiString(2) country code and a CiString(3) party id"
        )
    party = PartyKey(country_code, party_id)
    if len(_PARTIES) < MAX_CACHED_PARTIES:
        _PARTIES[(cc, pid)] = party  # only valid ones: the cache cannot be filled with junk
    return party


def _request_id(value: bytes | None, name: str) -> bytes | None:
    if value is None:
        return None
    if len(value) > MAX_ID_LENGTH or not _printable(value):
        raise InvalidParametersError(f"{name} must be printable ASCII of at most {MAX_ID_LENGTH} characters")
    return value


@dataclass(slots=True)  # not frozen: frozen __init__ costs a microsecond per request on the hot path
class RequestHeaders:
    """What the hub reads from one request's headers (treat as read-only)."""

    authorization: bytes | None
    request_id: bytes | None
    correlation_id: bytes | None
    to_party: PartyKey | None
    from_party: PartyKey | None
    content_length: int | None
    passthrough: list[tuple[bytes, bytes]]
    #: What was wrong with the other headers; raised once the caller is authenticated (``check``).
    problem: InvalidParametersError | None = None

    def check(self) -> None:
        if self.problem is not None:
            raise self.problem


_AUTHORIZATION, _REQUEST_ID, _CONTENT_LENGTH, _CORRELATION_ID, _TO_CC, _TO_PID, _FROM_CC, _FROM_PID = range(8)
#: The headers the hub reads, by slot; the first three are not passed on (they are rewritten or re-framed).
_SLOTS: Final = {
    AUTHORIZATION: _AUTHORIZATION,
    X_REQUEST_ID: _REQUEST_ID,
    CONTENT_LENGTH: _CONTENT_LENGTH,
    X_CORRELATION_ID: _CORRELATION_ID,
    OCPI_TO_COUNTRY_CODE: _TO_CC,
    OCPI_TO_PARTY_ID: _TO_PID,
    OCPI_FROM_COUNTRY_CODE: _FROM_CC,
    OCPI_FROM_PARTY_ID: _FROM_PID,
}


def read_request_headers(raw: Iterable[tuple[bytes, bytes]]) -> RequestHeaders:
    """One pass over ASGI headers (names already lowercase); a bad value is kept in ``problem``."""
    found: list[bytes | None] = [None] * 8
    passthrough: list[tuple[bytes, bytes]] = []
    slots = _SLOTS
    repeated = ""
    for name, value in raw:
        slot = slots.get(name)
        if slot is None:
            if name not in NOT_FORWARDED:
                passthrough.append((name, value))
        elif found[slot] is not None:
            # A repeated routing, id or token header: the hub would check one copy and a receiver might read
            # the other (impersonation), so it is refused.
            repeated = name.decode("latin-1")
        elif slot >= _CORRELATION_ID:
            if slot == _CORRELATION_ID and not value:
                continue  # an empty one counts as missing: the hub creates one and forwards that
            found[slot] = value
            passthrough.append((name, value))
        else:
            found[slot] = value
    length = found[_CONTENT_LENGTH]
    parsed = RequestHeaders(
        authorization=found[_AUTHORIZATION],
        request_id=None,
        correlation_id=None,
        to_party=None,
        from_party=None,
        content_length=int(length) if length is not None and length.isdigit() else None,
        passthrough=passthrough,
    )
    # Validation errors wait until the token is checked: an unauthenticated caller gets 401 whatever else is
    # wrong (transport_and_format §4.1.2).
    try:
        if repeated:
            raise InvalidParametersError(f"the {repeated} header may appear only once")
        if length is not None and not length.isdigit():
            raise InvalidParametersError("Content-Length must be a number")
        parsed.request_id = _request_id(found[_REQUEST_ID], "X-Request-ID")
        parsed.correlation_id = _request_id(found[_CORRELATION_ID], "X-Correlation-ID")
        parsed.to_party = _party(found[_TO_CC], found[_TO_PID], "to")
        parsed.from_party = _party(found[_FROM_CC], found[_FROM_PID], "from")
    except InvalidParametersError as problem:
        parsed.problem = problem
    return parsed


@dataclass(frozen=True, slots=True)
class TokenCandidates:
    """The two readings of an Authorization value: Base64-decoded (2.2.1) and raw (2.1.1/2.2 peers)."""

    decoded: bytes | None
    raw: bytes


def parse_authorization(value: bytes | None) -> TokenCandidates:
    """``Token <base64>`` or ``Token <raw>`` → candidates; UnauthorizedError when absent or not of that form."""
    if value is None:
        raise UnauthorizedError("missing Authorization header")
    if len(value) > MAX_AUTHORIZATION_LENGTH or value[:6].lower() != _TOKEN_SCHEME:
        raise UnauthorizedError("Authorization must be 'Token <credentials token>'")
    raw = value[6:].strip()
    if not raw or not _printable(raw):
        raise UnauthorizedError("Authorization must be 'Token <credentials token>'")
    try:
        decoded: bytes | None = binascii.a2b_base64(raw, strict_mode=True)
    except (binascii.Error, ValueError):
        decoded = None
    if decoded is not None and not (decoded and _printable(decoded)):
        decoded = None
    return TokenCandidates(decoded=decoded, raw=raw)


def authorization_value(token: str, base64_form: bool) -> bytes:
    """The Authorization value the hub sends with ``token``, in the form that peer uses."""
    encoded = token.encode("utf-8")
    if base64_form:
        encoded = binascii.b2a_base64(encoded, newline=False)
    return b"Token " + encoded


#: The four routing headers (transport_and_format §4.1.8.2).
ROUTING_HEADERS: Final = frozenset({OCPI_TO_COUNTRY_CODE, OCPI_TO_PARTY_ID, OCPI_FROM_COUNTRY_CODE, OCPI_FROM_PARTY_ID})

_TO_HEADERS: dict[PartyKey, tuple[tuple[bytes, bytes], ...]] = {}
_FROM_HEADERS: dict[PartyKey, tuple[tuple[bytes, bytes], ...]] = {}


def to_headers(party: PartyKey) -> tuple[tuple[bytes, bytes], ...]:
    """``OCPI-to-country-code`` and ``OCPI-to-party-id`` naming ``party`` (built once per party)."""
    headers = _TO_HEADERS.get(party)
    if headers is None:
        headers = ((OCPI_TO_COUNTRY_CODE, party.country_code.encode()), (OCPI_TO_PARTY_ID, party.party_id.encode()))
        if len(_TO_HEADERS) < MAX_CACHED_PARTIES:
            _TO_HEADERS[party] = headers
    return headers


def from_headers(party: PartyKey) -> tuple[tuple[bytes, bytes], ...]:
    """``OCPI-from-country-code`` and ``OCPI-from-party-id`` naming ``party`` (built once per party)."""
    headers = _FROM_HEADERS.get(party)
    if headers is None:
        headers = (
            (OCPI_FROM_COUNTRY_CODE, party.country_code.encode()),
            (OCPI_FROM_PARTY_ID, party.party_id.encode()),
        )
        if len(_FROM_HEADERS) < MAX_CACHED_PARTIES:
            _FROM_HEADERS[party] = headers
    return headers
