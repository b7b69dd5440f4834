"""Signed relay URLs: a hub URL that stands for a party's URL, self-contained, so nothing is stored to follow it.

Owns: the token format of ``/ocpi/2.2.1/relay/{token}{path}?{query}`` (digest §2.10: the hub must stand in for
``response_url``, the CDR ``Location`` and pagination ``Link`` URLs, because the other side holds no credentials
at their origin). The token is 64 URL-safe characters: 48 bytes = a 36-byte header and a 96-bit HMAC-SHA256 tag.

    header: key id (1) | expiry, epoch seconds (4) | target platform id (8) | allowed platform id (8) |
            module (1) | TO party (5, zeros for none) | FROM party (5) | SHA-256 of the target origin, first 4 bytes

The tag covers the header and the target path (the part after the token), so neither can be changed; the query
stays outside (readable filters, transport_and_format §4.1.4.1 "Link ... should also contain any filters"). The
target origin is named by a hash, so a relay can only ever lead to an origin the platform registered, in the
scheme it registered there. Any replica verifies a token with the shared keys from the registry snapshot, also
while Redis is unreachable and after a restart. URLs stay well under OCPI's 255-character URL type (types §16).
Must not: do I/O or read a clock (``now`` is passed in).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from routing.model import ModuleID, PartyKey
from routing.table import Platform, SigningKeys

TOKEN_LENGTH: Final = 64
_HEADER: Final = struct.Struct(">BI8s8sB5s5s4s")
_TAG_BYTES: Final = 12
_NO_PARTY: Final = b"\0" * 5
#: Module numbers in tokens: append only, never reorder (tokens in flight carry them).
MODULE_NUMBERS: Final = (
    ModuleID.CDRS,
    ModuleID.CHARGINGPROFILES,
    ModuleID.COMMANDS,
    ModuleID.LOCATIONS,
    ModuleID.SESSIONS,
    ModuleID.TARIFFS,
    ModuleID.TOKENS,
)
_MODULE_NUMBER: Final = {m: i for i, m in enumerate(MODULE_NUMBERS)}


@dataclass(frozen=True, slots=True)
class RelayGrant:
    """What a valid relay token stands for."""

    #: The platform whose URL the relay points at, and the one platform allowed to use it.
    platform_id: str
    allowed_id: str
    module: ModuleID
    #: The full target URL without its query, on an origin the platform registered.
    target: str
    #: The routing parties of the exchange the URL came from, for a client that does not repeat them.
    to_party: PartyKey | None
    from_party: PartyKey | None


@functools.lru_cache(maxsize=4096)
def origin_tag(origin: str) -> bytes:
    # Cached: a platform has a handful of origins, and every Link of a crawl hashes the same one.
    return hashlib.sha256(origin.encode("ascii")).digest()[:4]


def _party(party: PartyKey | None) -> bytes:
    return _NO_PARTY if party is None else (party.country_code + party.party_id).encode("ascii")


def _unparty(raw: bytes) -> PartyKey | None:
    if raw == _NO_PARTY:
        return None
    text = raw.decode("ascii")
    return PartyKey(text[:2], text[2:])


def sign(
    keys: SigningKeys,
    *,
    target_platform: str,
    allowed_platform: str,
    module: ModuleID,
    origin: str,
    path: str,
    to_party: PartyKey | None,
    from_party: PartyKey | None,
    expires: int,
) -> str | None:
    """The token for ``origin`` + ``path`` (path: "/..." without query), or None when no key is loaded yet."""
    key = keys.keys.get(keys.current)
    if key is None:
        return None
    header = _HEADER.pack(
        keys.current,
        expires,
        bytes.fromhex(target_platform),
        bytes.fromhex(allowed_platform),
        _MODULE_NUMBER[module],
        _party(to_party),
        _party(from_party),
        origin_tag(origin),
    )
    tag = hmac.digest(key, header + path.encode("latin-1"), "sha256")[:_TAG_BYTES]
    return base64.urlsafe_b64encode(header + tag).decode("ascii")


def verify(keys: SigningKeys, rest: str, platforms: Mapping[str, Platform], now: float) -> RelayGrant | None:
    """``rest`` = what follows the relay prefix in a request path (token + target path); None unless the token
    is well formed, signed with a key still accepted, unexpired, and its origin still one the platform
    registered. ``platforms`` is the snapshot's platforms by id."""
    if len(rest) < TOKEN_LENGTH + 1 or rest[TOKEN_LENGTH] != "/":
        return None
    token, path = rest[:TOKEN_LENGTH], rest[TOKEN_LENGTH:]
    try:
        raw = base64.urlsafe_b64decode(token)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _HEADER.size + _TAG_BYTES:
        return None
    header, tag = raw[: _HEADER.size], raw[_HEADER.size :]
    kid, expires, target_id, allowed_id, module_number, to_raw, from_raw, origin_hash = _HEADER.unpack(header)
    key = keys.keys.get(kid)
    if key is None or module_number >= len(MODULE_NUMBERS):
        return None
    expected = hmac.digest(key, header + path.encode("latin-1"), "sha256")[:_TAG_BYTES]
    if not hmac.compare_digest(expected, tag) or expires < now:
        return None
    platform = platforms.get(target_id.hex())
    if platform is None:
        return None
    origin = next(
        (o for o in (f"{s}://{a}" for a, s in platform.authorities.items()) if origin_tag(o) == origin_hash), None
    )
    if origin is None:
        return None
    return RelayGrant(
        platform_id=platform.id,
        allowed_id=allowed_id.hex(),
        module=MODULE_NUMBERS[module_number],
        target=origin + path,
        to_party=_unparty(to_raw),
        from_party=_unparty(from_raw),
    )
