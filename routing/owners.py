"""Who owns what, as Open Routing needs it: the vocabulary of the hub's owner index (pure).

Owns: ``OwnerKind`` (what an index key names), how keys are spelled (ids are CiStrings, types §16.1: compared
upper-cased; a token is named by type and uid, mod_tokens §12.2.1) and ``OwnerFact``. registry/owners.py keeps the
index in Redis; routing/openroute.py decides which fact a request teaches and which lookup it needs.
Must not: do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from routing.model import PartyKey

#: Keys are CiString(36) ids, for tokens prefixed with the type (``AD_HOC_USER:`` is the longest).
MAX_KEY_LENGTH: Final = 64


class OwnerKind(StrEnum):
    """What an index key names."""

    TOKEN = "token"  # key: token_key(uid, type); owner: the eMSP (Token.country_code/party_id)
    LOCATION = "location"  # key: Location.id; owner: the CPO
    SESSION_CPO = "session_cpo"  # key: Session.id; owner: the CPO that sent it
    SESSION_EMSP = "session_emsp"  # key: Session.id; owner: the eMSP that received its PUT
    RESERVATION = "reservation"  # key: ReserveNow.reservation_id; owner: the CPO that received the RESERVE_NOW


def token_key(uid: str, token_type: str) -> str:
    """The index key of a token: its type and uid (mod_tokens §12.2.1: uid + type name a token)."""
    return f"{token_type}:{uid}".upper()


def index_field(key: str) -> str:
    """The HASH field of a key: ids are CiStrings and compare case-insensitively (types §16.1)."""
    return key.upper()


def valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()


@dataclass(frozen=True, slots=True)
class OwnerFact:
    """``party`` owns ``key`` of ``kind`` (seen on routed traffic, or on a broadcast object)."""

    kind: OwnerKind
    key: str
    party: PartyKey
    #: Reservations: ReserveNow.expiry_date. Ignored for other kinds.
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        if not valid_key(self.key):
            raise ValueError(f"owner index key must be 1..{MAX_KEY_LENGTH} printable ASCII characters")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at must be an aware datetime")
